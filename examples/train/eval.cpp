// trident-train's evaluation and sampling modes (one process).
#include <cmath>
#include <cstdio>

#include "setup.hpp"
#include "trident/core/rng.hpp"
#include "trident/io/data.hpp"
#include "trident/models/builtin_models.hpp"
#include "trident/train/sampling.hpp"

namespace trident::train {

int run_eval(const Options& opt) {
  TRIDENT_CHECK(!opt.data.empty(), "eval mode needs a token file: --data FILE");
  TRIDENT_CHECK(opt.eval_windows > 0, "--eval-windows must be positive");
  const auto builder = models::builtin_models().resolve(model_args(opt));
  check_sizes(opt, builder->max_seq_len());
  // Only the evaluated windows are read (and checked against the vocabulary).
  const data::TokenSourcePtr source = data::open_token_source(opt.data, builder->vocab_size());
  const int64_t T = opt.seq;
  const int64_t need = opt.eval_windows * T + 1;
  TRIDENT_CHECK(source->size() >= need, opt.data, " holds ", source->size(), " tokens; ",
                opt.eval_windows, " windows of ", T, " need ", need);
  std::vector<int32_t> tokens(static_cast<size_t>(need));
  source->read(0, need, tokens.data());
  const auto model = builder->build(nullptr);
  const Device device = model->device();
  NoGradGuard no_grad;
  model->module().eval();
  double total = 0;
  for (int64_t k = 0; k < opt.eval_windows; ++k) {
    std::vector<int32_t> x(tokens.begin() + k * T, tokens.begin() + k * T + T);
    std::vector<int32_t> y(tokens.begin() + k * T + 1, tokens.begin() + k * T + T + 1);
    total += model
                 ->loss(model->forward(Tensor::from_vector(x, {1, T}, device)),
                        Tensor::from_vector(y, {1, T}, device), 1.0)
                 .item();
  }
  const double mean = total / static_cast<double>(opt.eval_windows);
  std::printf("eval: %lld windows x %lld tokens of %s: mean cross-entropy %.6f (perplexity %.3f)\n",
              static_cast<long long>(opt.eval_windows), static_cast<long long>(T), opt.data.c_str(),
              mean, std::exp(mean));
  return 0;
}

// Sampling runs any registered model that provides logits() (train::generate).
int run_sample(const Options& opt) {
  TRIDENT_CHECK(
      !opt.load.empty() || !opt.hf.empty(),
      "sample mode needs a trained model: --load runs/default/model.safetensors or --hf DIR");
  const auto builder = models::builtin_models().resolve(model_args(opt));
  TRIDENT_CHECK(builder->vocab_size() >= 256,
                "sample mode decodes bytes: the model's vocabulary of ", builder->vocab_size(),
                " is not byte-level");
  const auto model = builder->build(nullptr);
  std::vector<int32_t> prompt;
  for (unsigned char c : opt.prompt) prompt.push_back(c);
  Generator gen(opt.seed);
  SampleOptions so;
  so.new_tokens = opt.sample_tokens;
  so.temperature = opt.temperature;
  so.top_k = opt.top_k;
  so.context_len = builder->max_seq_len();
  so.vocab_size = builder->vocab_size();
  const std::vector<int32_t> out = generate(*model, prompt, so, gen);
  std::string text;
  for (int32_t t : out) text += t < 256 ? static_cast<char>(t) : '?';
  std::printf("%s\n", text.c_str());
  return 0;
}

}  // namespace trident::train
