// Sampling from any model that provides logits() (trident/train/trainable_model.hpp), on one
// rank: each new token is drawn from the softmax of the last position's logits at
// `temperature`, over the `top_k` most likely tokens (0 = all); the context is the last
// `context_len` tokens. Padding columns (past `vocab_size`) are never drawn.
#pragma once
#include <cstdint>
#include <vector>

#include "trident/core/rng.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::train {

struct SampleOptions {
  int64_t new_tokens = 0;
  double temperature = 1.0;
  int64_t top_k = 0;
  int64_t context_len = 0;  // the model's block size
  int64_t vocab_size = 0;   // tokens that may be drawn: [0, vocab_size)
};

// Returns the prompt followed by opt.new_tokens drawn tokens; the model is left in the
// train/eval mode it was in.
std::vector<int32_t> generate(TrainableModel& model, std::vector<int32_t> prompt,
                              const SampleOptions& opt, Generator& gen);

}  // namespace trident::train
