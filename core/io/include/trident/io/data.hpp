// Token streams for language-model training, and the built-in synthetic data set.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/tensor.hpp"
#include "trident/io/token_dataset.hpp"

namespace trident::data {

// A token source and the order its windows are read in (token_dataset.hpp): training streams
// shuffle per epoch from the seed; validation and the built-in data set are read in order.
struct TokenStream {
  TokenSourcePtr source;
  bool shuffle = false;
  uint64_t seed = 0;
};

// Cuts (inputs, targets) batches of shape (B, T): batch k holds samples [k*B, k*B + B) of the
// TokenDataset over the stream with windows of T + 1 tokens (row b: sample k*B + b, targets
// shifted by one). A batch is a pure function of its index, so any data-parallel layout that
// maps its micro-batches to global indices consumes the same tokens, and a resume is exact.
// The data position of a checkpoint is position(k): the samples before batch k.
class TokenLoader {
 public:
  TokenLoader(TokenStream stream, int64_t batch, int64_t seq);
  // In-memory tokens read in order; rank r of `world` takes batch index k * world + r.
  TokenLoader(std::vector<int32_t> tokens, int64_t batch, int64_t seq, int rank = 0, int world = 1);
  std::pair<Tensor, Tensor> batch(int64_t index, Device device = Device::cpu()) const;
  // The B samples starting at `first_sample` (a resume from a saved position).
  std::pair<Tensor, Tensor> batch_at(int64_t first_sample, Device device = Device::cpu()) const;
  int64_t position(int64_t index) const { return index * B_; }
  int64_t num_tokens() const { return dataset_.source().size(); }
  const TokenDataset& dataset() const { return dataset_; }

 private:
  TokenDataset dataset_;
  int64_t B_, T_;
  int rank_ = 0, world_ = 1;
};

// The built-in data set: lines "a+b=SUM;\n" with digits a and b drawn uniformly and their sum
// written as two digits, least-significant first ("7+8=51;\n" for 7 + 8 = 15, "2+3=50;\n" for
// 5), as bytes. Lines are 8 bytes, so windows cut at multiples of 8 start on a line. Only the
// two operand digits are random: the best achievable loss is 2 ln(10) / 8 = 0.576 nats per
// character (a model that has learnt the addition table); one that knows the format but not
// the sums sits near 0.95, a unigram model near 2.2.
std::vector<int32_t> make_addition_dataset(int64_t num_lines, uint64_t seed);
double addition_dataset_loss_floor();

// Reads a whole token file (llm.c .bin or HDF5, or a glob/list of shards; see
// open_token_source) into memory.
std::vector<int32_t> load_tokens(const std::string& path);
// The same, refusing a file with a token outside a vocabulary of `vocab_size` (the message names
// the file, the token and its position).
std::vector<int32_t> load_tokens(const std::string& path, int64_t vocab_size);

}  // namespace trident::data
