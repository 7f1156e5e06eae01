#include "trident/core/data.hpp"

#include <algorithm>
#include <cmath>

#include "trident/core/rng.hpp"
#include "trident/core/token_file.hpp"

namespace trident::data {

TokenLoader::TokenLoader(std::vector<int32_t> tokens, int64_t batch, int64_t seq, int rank,
                         int world)
    : tokens_(std::move(tokens)), B_(batch), T_(seq), rank_(rank), world_(world) {
  TRIDENT_CHECK(batch > 0 && seq > 0, "batch size and sequence length must be positive (got ",
                batch, " and ", seq, ")");
  TRIDENT_CHECK(static_cast<int64_t>(tokens_.size()) > batch * seq + 1, "the data set has ",
                tokens_.size(), " tokens, fewer than one batch of ", batch, " x ", seq, " + 1");
}

std::pair<Tensor, Tensor> TokenLoader::batch(int64_t step, Device device) const {
  const int64_t span = B_ * T_;
  const int64_t room = static_cast<int64_t>(tokens_.size()) - span - 1;
  const int64_t start = ((step * world_ + rank_) * span) % (room + 1);
  std::vector<int32_t> x(tokens_.begin() + start, tokens_.begin() + start + span);
  std::vector<int32_t> y(tokens_.begin() + start + 1, tokens_.begin() + start + span + 1);
  return {Tensor::from_vector(x, {B_, T_}, device), Tensor::from_vector(y, {B_, T_}, device)};
}

int64_t TokenLoader::max_token() const {
  return tokens_.empty() ? -1 : *std::max_element(tokens_.begin(), tokens_.end());
}

std::vector<int32_t> make_addition_dataset(int64_t num_lines, uint64_t seed) {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(num_lines) * 8);
  for (int64_t i = 0; i < num_lines; ++i) {
    const uint64_t h = counter_hash(seed, static_cast<uint64_t>(i));
    const int a = static_cast<int>(h % 10), b = static_cast<int>((h >> 20) % 10);
    const int s = a + b;
    const char line[8] = {static_cast<char>('0' + a), '+', static_cast<char>('0' + b), '=',
                          static_cast<char>('0' + s % 10), static_cast<char>('0' + s / 10), ';',
                          '\n'};
    for (char c : line) out.push_back(static_cast<unsigned char>(c));
  }
  return out;
}

double addition_dataset_loss_floor() { return 2.0 * std::log(10.0) / 8.0; }

std::vector<int32_t> load_tokens(const std::string& path) {
  const std::vector<uint16_t> raw = read_token_file(path);
  return std::vector<int32_t>(raw.begin(), raw.end());
}

std::vector<int32_t> load_tokens(const std::string& path, int64_t vocab_size) {
  const std::vector<uint16_t> raw = read_token_file(path);
  check_tokens_in_vocab(raw, vocab_size, path);
  return std::vector<int32_t>(raw.begin(), raw.end());
}

}  // namespace trident::data
