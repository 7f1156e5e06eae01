#include "trident/io/data.hpp"

#include <algorithm>
#include <cmath>

#include "trident/core/rng.hpp"

namespace trident::data {

TokenLoader::TokenLoader(TokenStream stream, int64_t batch, int64_t seq)
    : dataset_(std::move(stream.source), seq, stream.shuffle, stream.seed), B_(batch), T_(seq) {
  TRIDENT_CHECK(batch > 0, "the batch size must be positive (got ", batch, ")");
}

TokenLoader::TokenLoader(std::vector<int32_t> tokens, int64_t batch, int64_t seq, int rank,
                         int world)
    : TokenLoader(TokenStream{memory_token_source(std::move(tokens), "tokens"), false, 0}, batch,
                  seq) {
  rank_ = rank;
  world_ = world;
}

std::pair<Tensor, Tensor> TokenLoader::batch(int64_t index, Device device) const {
  return batch_at(position(index * world_ + rank_), device);
}

std::pair<Tensor, Tensor> TokenLoader::batch_at(int64_t first_sample, Device device) const {
  std::vector<int32_t> x(static_cast<size_t>(B_ * T_)), y(x.size());
  for (int64_t b = 0; b < B_; ++b) {
    dataset_.read_sample(first_sample + b, x.data() + b * T_, y.data() + b * T_);
  }
  return {Tensor::from_vector(x, {B_, T_}, device), Tensor::from_vector(y, {B_, T_}, device)};
}

std::vector<int32_t> make_addition_dataset(int64_t num_lines, uint64_t seed) {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(num_lines) * 8);
  for (int64_t i = 0; i < num_lines; ++i) {
    const uint64_t h = counter_hash(seed, static_cast<uint64_t>(i));
    const int a = static_cast<int>(h % 10), b = static_cast<int>((h >> 20) % 10);
    const int s = a + b;
    const char line[8] = {static_cast<char>('0' + a),
                          '+',
                          static_cast<char>('0' + b),
                          '=',
                          static_cast<char>('0' + s % 10),
                          static_cast<char>('0' + s / 10),
                          ';',
                          '\n'};
    for (char c : line) out.push_back(static_cast<unsigned char>(c));
  }
  return out;
}

double addition_dataset_loss_floor() {
  return 2.0 * std::log(10.0) / 8.0;
}

std::vector<int32_t> load_tokens(const std::string& path) {
  return load_tokens(path, 0);
}

std::vector<int32_t> load_tokens(const std::string& path, int64_t vocab_size) {
  const TokenSourcePtr source = open_token_source(path, vocab_size);
  std::vector<int32_t> tokens(static_cast<size_t>(source->size()));
  source->read(0, source->size(), tokens.data());
  return tokens;
}

}  // namespace trident::data
