#include "trident/train/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "trident/core/error.hpp"
#include "trident/core/tensor.hpp"

namespace trident::train {

namespace {

// One token from `logits` (the real vocabulary only): softmax at `temperature` over the top k.
int32_t draw(const std::vector<float>& logits, double temperature, int64_t top_k, Generator& gen) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t k =
      top_k > 0 ? std::min<size_t>(static_cast<size_t>(top_k), logits.size()) : logits.size();
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::vector<double> probs(k);
  const double mx = logits[static_cast<size_t>(order[0])];
  double total = 0;
  for (size_t i = 0; i < k; ++i) {
    probs[i] = std::exp((logits[static_cast<size_t>(order[i])] - mx) / temperature);
    total += probs[i];
  }
  double r = gen.uniform() * total;
  for (size_t i = 0; i < k; ++i) {
    if ((r -= probs[i]) < 0) return order[i];
  }
  return order[k - 1];
}

}  // namespace

std::vector<int32_t> generate(TrainableModel& model, std::vector<int32_t> tokens,
                              const SampleOptions& opt, Generator& gen) {
  TRIDENT_CHECK(!tokens.empty(), "generate: the prompt needs at least one token");
  TRIDENT_CHECK(opt.temperature > 0, "generate: temperature must be positive, got ",
                opt.temperature);
  TRIDENT_CHECK(opt.context_len > 0 && opt.vocab_size > 0,
                "generate: context_len and vocab_size must be positive");
  NoGradGuard no_grad;
  nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  const Device dev = model.device();
  for (int64_t step = 0; step < opt.new_tokens; ++step) {
    const int64_t start =
        std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - opt.context_len);
    const std::vector<int32_t> ctx(tokens.begin() + start, tokens.end());
    const int64_t T = static_cast<int64_t>(ctx.size());
    const Tensor logits = model.logits(Tensor::from_vector(ctx, {1, T}, dev));
    std::vector<float> last = logits.slice(1, T - 1, T).to_vector<float>();
    TRIDENT_CHECK(static_cast<int64_t>(last.size()) >= opt.vocab_size, "generate: the model's ",
                  last.size(), " logits are fewer than the vocabulary of ", opt.vocab_size);
    last.resize(static_cast<size_t>(opt.vocab_size));  // padding columns are never drawn
    tokens.push_back(draw(last, opt.temperature, opt.top_k, gen));
  }
  module.train(was_training);
  return tokens;
}

}  // namespace trident::train
