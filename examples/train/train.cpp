// The training loop, evaluation and sampling modes of trident-train.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "model_io.hpp"
#include "options.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/data.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/rng.hpp"

namespace trident::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string human_bytes(size_t b) {
  char buf[32];
  if (b >= (size_t(1) << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  }
  return buf;
}

struct DataSplit {
  std::vector<int32_t> train, val;
  std::string description;
  bool builtin = false;
};

DataSplit load_data(const Options& opt, int64_t vocab) {
  DataSplit d;
  if (opt.data.empty()) {
    TRIDENT_CHECK(vocab >= 128, "the built-in data set is byte-level text: it needs a vocabulary "
                  "of at least 128 tokens, the model has ", vocab);
    d.train = data::make_addition_dataset(200000, opt.seed);
    d.val = data::make_addition_dataset(20000, opt.seed + 0x5EED);
    d.builtin = true;
    d.description = "built-in addition data set (2,000,000 train / 200,000 val characters)";
    return d;
  }
  std::vector<int32_t> all = data::load_tokens(opt.data);
  for (size_t i = 0; i < all.size(); ++i) {
    TRIDENT_CHECK(all[i] < vocab, opt.data, ": token ", all[i], " at position ", i,
                  " is outside the model's vocabulary of ", vocab);
  }
  // The last 10% is held out for validation.
  const size_t cut = all.size() - all.size() / 10;
  d.val.assign(all.begin() + static_cast<std::ptrdiff_t>(cut), all.end());
  all.resize(cut);
  d.train = std::move(all);
  d.description = opt.data + " (" + std::to_string(d.train.size()) + " train / " +
                  std::to_string(d.val.size()) + " val tokens)";
  return d;
}

double evaluate(models::GPT& model, const data::TokenLoader& loader, int64_t batches,
                Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  double total = 0;
  for (int64_t k = 0; k < batches; ++k) {
    auto [x, y] = loader.batch(k, device);
    total += model.loss(x, y).item();
  }
  model.train(was_training);
  return total / static_cast<double>(batches);
}

void check_sizes(const Options& opt, const models::GPTConfig& cfg) {
  TRIDENT_CHECK(opt.seq > 0 && opt.batch > 0, "--batch and --seq must be positive");
  TRIDENT_CHECK(opt.seq <= cfg.block_size, "--seq ", opt.seq,
                " is longer than the model's context of ", cfg.block_size,
                " tokens (raise --block or lower --seq)");
  TRIDENT_CHECK(opt.steps >= 0, "--steps must not be negative");
  TRIDENT_CHECK(opt.log_interval > 0, "--log-interval must be positive");
}

}  // namespace

int run_train(const Options& opt) {
  const Device device = Device::parse(opt.device);
  auto model = build_model(opt, device);
  const models::GPTConfig& cfg = model->config();
  check_sizes(opt, cfg);
  DataSplit split = load_data(opt, cfg.vocab_size);
  data::TokenLoader train_loader(std::move(split.train), opt.batch, opt.seq);
  data::TokenLoader val_loader(std::move(split.val), opt.batch, opt.seq);

  // Matrices (and embeddings) are decayed; biases and LayerNorm parameters are not.
  optim::ParamGroup decay{{}, opt.weight_decay}, no_decay{{}, 0.0f};
  for (auto& [name, p] : model->named_parameters()) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  std::unique_ptr<optim::Optimizer> optimizer;
  if (opt.optimizer == "sgd") {
    optimizer = std::make_unique<optim::SGD>(
        std::vector<optim::ParamGroup>{decay, no_decay},
        optim::SGDOptions{opt.lr, opt.momentum, 0.0f, opt.nesterov});
  } else {
    optimizer = std::make_unique<optim::AdamW>(
        std::vector<optim::ParamGroup>{decay, no_decay},
        optim::AdamWOptions{opt.lr, opt.beta1, opt.beta2, opt.eps});
  }
  const optim::CosineSchedule schedule{opt.lr, opt.min_lr, opt.warmup, std::max<int64_t>(opt.steps, 1)};
  const std::vector<Tensor> params = model->parameters();

  const bool tty = isatty(STDOUT_FILENO) != 0;
  std::printf("trident-train: %s on %s\n", cfg.describe().c_str(), device.str().c_str());
  std::printf("data: %s\n", split.description.c_str());
  std::printf("batch %lld x %lld tokens, %lld steps, %s lr %.3g (warmup %lld, cosine to %.3g)\n",
              static_cast<long long>(opt.batch), static_cast<long long>(opt.seq),
              static_cast<long long>(opt.steps), opt.optimizer.c_str(), opt.lr,
              static_cast<long long>(opt.warmup), opt.min_lr);
  std::fflush(stdout);

  const int64_t val_batches = std::min<int64_t>(20, val_loader.num_tokens() / (opt.batch * opt.seq + 1));
  Allocator& alloc = allocator_for(device);
  const auto run_start = Clock::now();
  double window_tokens = 0, window_time = 0, last_loss = 0;
  for (int64_t step = 0; step < opt.steps; ++step) {
    const auto t0 = Clock::now();
    auto [x, y] = train_loader.batch(step, device);
    optimizer->zero_grad();
    Tensor loss = model->loss(x, y);
    loss.backward();
    if (opt.grad_clip > 0) optim::clip_grad_norm(params, opt.grad_clip);
    optimizer->set_lr(schedule.lr(step));
    optimizer->step();
    last_loss = loss.item();
    TRIDENT_CHECK(std::isfinite(last_loss), "loss is ", last_loss, " at step ", step + 1,
                  " (lower --lr or enable --grad-clip)");
    const double dt = seconds_since(t0);
    window_time += dt;
    window_tokens += static_cast<double>(opt.batch * opt.seq);
    const bool log = (step + 1) % opt.log_interval == 0 || step + 1 == opt.steps || step == 0;
    if (log) {
      if (tty) std::printf("\r\033[K");
      std::printf("step %5lld/%lld | loss %.4f | lr %.3e | %8.0f tok/s | %7.1f ms/step | peak mem %s\n",
                  static_cast<long long>(step + 1), static_cast<long long>(opt.steps), last_loss,
                  optimizer->lr(), window_tokens / window_time, 1000.0 * window_time /
                  std::max(1.0, window_tokens / static_cast<double>(opt.batch * opt.seq)),
                  human_bytes(alloc.stats().peak_bytes).c_str());
      window_tokens = window_time = 0;
    } else if (tty) {
      const int width = 30;
      const int filled = static_cast<int>(width * (step + 1) / opt.steps);
      std::printf("\r\033[K[%s%s] %lld/%lld loss %.4f", std::string(filled, '#').c_str(),
                  std::string(width - filled, '.').c_str(), static_cast<long long>(step + 1),
                  static_cast<long long>(opt.steps), last_loss);
    }
    if (opt.eval_interval > 0 && (step + 1) % opt.eval_interval == 0 && step + 1 < opt.steps) {
      std::printf("step %5lld | val loss %.4f\n", static_cast<long long>(step + 1),
                  evaluate(*model, val_loader, val_batches, device));
    }
    std::fflush(stdout);
  }
  const double val = evaluate(*model, val_loader, val_batches, device);
  std::printf("done in %.1f s | final train loss %.4f | val loss %.4f", seconds_since(run_start),
              last_loss, val);
  if (split.builtin) std::printf(" | best possible %.4f", data::addition_dataset_loss_floor());
  std::printf("\n");
  const std::string path = opt.out_dir + "/model.safetensors";
  save_model(*model, path);
  std::printf("weights written to %s\n", path.c_str());
  return 0;
}

int run_eval(const Options& opt) {
  TRIDENT_CHECK(!opt.data.empty(), "eval mode needs a token file: --data FILE");
  TRIDENT_CHECK(opt.eval_windows > 0, "--eval-windows must be positive");
  const Device device = Device::parse(opt.device);
  auto model = build_model(opt, device);
  const models::GPTConfig& cfg = model->config();
  const int64_t T = opt.seq;
  check_sizes(opt, cfg);
  const std::vector<int32_t> tokens = data::load_tokens(opt.data);
  const int64_t need = opt.eval_windows * T + 1;
  TRIDENT_CHECK(static_cast<int64_t>(tokens.size()) >= need, opt.data, " holds ", tokens.size(),
                " tokens; ", opt.eval_windows, " windows of ", T, " need ", need);
  for (int64_t i = 0; i < need; ++i) {
    TRIDENT_CHECK(tokens[static_cast<size_t>(i)] < cfg.vocab_size, opt.data, ": token ",
                  tokens[static_cast<size_t>(i)], " at position ", i,
                  " is outside the model's vocabulary of ", cfg.vocab_size);
  }
  NoGradGuard no_grad;
  model->eval();
  double total = 0;
  for (int64_t k = 0; k < opt.eval_windows; ++k) {
    std::vector<int32_t> x(tokens.begin() + k * T, tokens.begin() + k * T + T);
    std::vector<int32_t> y(tokens.begin() + k * T + 1, tokens.begin() + k * T + T + 1);
    total += model->loss(Tensor::from_vector(x, {1, T}, device),
                         Tensor::from_vector(y, {1, T}, device)).item();
  }
  const double mean = total / static_cast<double>(opt.eval_windows);
  std::printf("eval: %lld windows x %lld tokens of %s: mean cross-entropy %.6f (perplexity %.3f)\n",
              static_cast<long long>(opt.eval_windows), static_cast<long long>(T),
              opt.data.c_str(), mean, std::exp(mean));
  return 0;
}

int run_sample(const Options& opt) {
  TRIDENT_CHECK(!opt.load.empty() || !opt.hf.empty(),
                "sample mode needs a trained model: --load runs/default/model.safetensors or --hf DIR");
  const Device device = Device::parse(opt.device);
  auto model = build_model(opt, device);
  TRIDENT_CHECK(model->config().vocab_size >= 256,
                "sample mode decodes bytes: the model's vocabulary of ", model->config().vocab_size,
                " is not byte-level");
  std::vector<int32_t> prompt;
  for (unsigned char c : opt.prompt) prompt.push_back(c);
  Generator gen(opt.seed);
  const std::vector<int32_t> out =
      model->generate(prompt, opt.sample_tokens, opt.temperature, opt.top_k, gen);
  std::string text;
  for (int32_t t : out) text += t < 256 ? static_cast<char>(t) : '?';
  std::printf("%s\n", text.c_str());
  return 0;
}

}  // namespace trident::train
