// Token streams for language-model training, and the built-in synthetic data set.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/tensor.hpp"

namespace trident::data {

// Cuts (inputs, targets) batches of shape (B, T) from a token array: batch k of rank r covers
// tokens [s, s + B*T + 1) with s = ((k * world + r) * B * T) mod (N - B*T - 1), targets shifted
// by one. The order is a pure function of (step, rank, world), so it survives a resume.
class TokenLoader {
 public:
  TokenLoader(std::vector<int32_t> tokens, int64_t batch, int64_t seq, int rank = 0,
              int world = 1);
  std::pair<Tensor, Tensor> batch(int64_t step, Device device = Device::cpu()) const;
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t max_token() const;

 private:
  std::vector<int32_t> tokens_;
  int64_t B_, T_;
  int rank_, world_;
};

// The built-in data set: lines "a+b=SUM;\n" with digits a and b drawn uniformly and their sum
// written as two digits, least-significant first ("7+8=51;\n" for 7 + 8 = 15, "2+3=50;\n" for
// 5), as bytes. Lines are 8 bytes, so windows cut at multiples of 8 start on a line. Only the
// two operand digits are random: the best achievable loss is 2 ln(10) / 8 = 0.576 nats per
// character (a model that has learnt the addition table); one that knows the format but not
// the sums sits near 0.95, a unigram model near 2.2.
std::vector<int32_t> make_addition_dataset(int64_t num_lines, uint64_t seed);
double addition_dataset_loss_floor();

// Reads a token file: llm.c .bin shards (HDF5 token files come with the data pipeline issue).
std::vector<int32_t> load_tokens(const std::string& path);
// The same, refusing a file with a token outside a vocabulary of `vocab_size` (the message names
// the file, the token and its position).
std::vector<int32_t> load_tokens(const std::string& path, int64_t vocab_size);

}  // namespace trident::data
