// Trident side of the CPU training-throughput benchmark (PyTorch side: cpu_train_torch.py; both
// are run, interleaved, by cpu_train.sh). The same GPT (models/gpt_config.hpp), trained on a few
// random token batches with AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on every
// parameter, as the torch script), timed per step.
//
// A timed step is zero_grad + forward + loss + backward + clip_grad_norm + AdamW step + reading
// the loss, exactly the torch script's step. The first --warmup-steps are not timed. Prints one
// JSON line with the torch script's fields: {"impl": "trident", "tokens_per_s": ..., ...},
// step_cpu_ms included (process CPU time per timed step, all threads).
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "trident/core/error.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/rng.hpp"
#include "trident/models/gpt.hpp"

using namespace trident;

namespace {

using namespace trident::bench;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Args {
  int64_t vocab = 50257, block = 256, layers = 4, heads = 4, width = 256;
  int64_t batch = 8, seq = 256, steps = 20, warmup_steps = 3;
  int threads = 0;  // 0: OpenMP's default
  double lr = 3e-4;
  double clip = 1.0;
  uint64_t seed = 1337;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Trident side of the CPU training-throughput benchmark (prints one JSON line)"};
  app.add_option("--vocab", a.vocab, "Vocabulary size")->capture_default_str();
  app.add_option("--block", a.block, "Block size (rows of wpe)")->capture_default_str();
  app.add_option("--layers", a.layers, "Transformer blocks")->capture_default_str();
  app.add_option("--heads", a.heads, "Attention heads")->capture_default_str();
  app.add_option("--width", a.width, "Embedding width")->capture_default_str();
  app.add_option("--batch", a.batch, "Sequences per step")->capture_default_str();
  app.add_option("--seq", a.seq, "Tokens per sequence")->capture_default_str();
  app.add_option("--steps", a.steps, "Timed steps")->capture_default_str();
  app.add_option("--warmup-steps", a.warmup_steps, "Untimed steps first")->capture_default_str();
  app.add_option("--threads", a.threads, "OpenMP threads (0: OpenMP's default)");
  app.add_option("--lr", a.lr, "AdamW learning rate")->capture_default_str();
  app.add_option("--clip", a.clip, "Global grad-norm clip; 0 disables")->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the weights and the tokens")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    TRIDENT_CHECK(a.seq <= a.block, "--seq ", a.seq, " exceeds --block ", a.block);
    TRIDENT_CHECK(a.width % a.heads == 0, "--heads ", a.heads, " does not divide --width ",
                  a.width);
    TRIDENT_CHECK(a.steps >= 1, "--steps must be at least 1");
    if (a.threads > 0) omp_set_num_threads(a.threads);

    models::GPTConfig cfg;
    cfg.vocab_size = a.vocab;
    cfg.block_size = a.block;
    cfg.n_layer = a.layers;
    cfg.n_head = a.heads;
    cfg.n_embd = a.width;
    models::GPT model(cfg, a.seed);
    const std::vector<Tensor> params = model.parameters();
    optim::AdamW opt({optim::ParamGroup{params, 0.1f}},
                     optim::AdamWOptions{static_cast<float>(a.lr), 0.9f, 0.95f, 1e-8f});

    const int64_t n_batches = 4;  // cycle a few random batches; data loading is not measured
    std::vector<Tensor> xs, ys;
    for (int64_t k = 0; k < n_batches; ++k) {
      xs.push_back(random_tokens(a.seed, a.vocab, a.batch, a.seq, 1, k));
      ys.push_back(random_tokens(a.seed, a.vocab, a.batch, a.seq, 2, k));
    }

    using Clock = std::chrono::steady_clock;
    std::vector<double> times, losses;
    double cpu_s = 0;  // process CPU time (all threads) of the timed steps
    for (int64_t step = 0; step < a.warmup_steps + a.steps; ++step) {
      const auto t0 = Clock::now();
      const double c0 = process_cpu_seconds();
      opt.zero_grad();
      Tensor loss = model.loss(xs[step % n_batches], ys[step % n_batches]);
      loss.backward();
      if (a.clip > 0) optim::clip_grad_norm(params, a.clip);
      opt.step();
      losses.push_back(loss.item());
      if (step >= a.warmup_steps) {
        times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        cpu_s += process_cpu_seconds() - c0;
      }
    }

    const double step_s = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
    const int64_t tokens = a.batch * a.seq;
    std::string command = "trident-bench-cpu-train";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const nlohmann::json result = {
        {"impl", "trident"},
        {"tokens_per_s", tokens / step_s},
        {"step_ms", step_s * 1e3},
        {"step_ms_median", median(times) * 1e3},
        {"step_ms_min", *std::min_element(times.begin(), times.end()) * 1e3},
        {"step_cpu_ms", cpu_s / times.size() * 1e3},
        {"tokens_per_step", tokens},
        {"params", cfg.num_parameters()},
        {"first_loss", losses.front()},
        {"last_loss", losses.back()},
        {"config",
         {{"vocab", a.vocab},
          {"block", a.block},
          {"layers", a.layers},
          {"heads", a.heads},
          {"width", a.width},
          {"batch", a.batch},
          {"seq", a.seq},
          {"steps", a.steps},
          {"warmup_steps", a.warmup_steps},
          {"lr", a.lr},
          {"clip", a.clip}}},
        {"threads", omp_get_max_threads()},
        {"trident", TRIDENT_BENCH_VERSION},
        {"machine", machine_json()},
        {"date", utc_now()},
        {"command", command},
    };
    std::printf("%s\n", result.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trident-bench-cpu-train: %s\n", e.what());
    return 1;
  }
  return 0;
}
