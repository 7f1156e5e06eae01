// Overlap of the data-parallel gradient reduction with the backward pass (parallel/
// data_parallel.hpp), run by bench/dp_overlap.sh under mpirun: every rank a data-parallel
// replica (dp = world size) of one GPT, random tokens, fp32 on the CPU.
//
// Modes: "overlap" (buckets all-reduced from the grad-ready hooks during backward),
// "no-overlap" (every bucket all-reduced after backward, in finish()), "zero" (ZeRO-1:
// reduce-scatter from the hooks, ZeroAdamW's sharded update and all-gather). For each round
// and each mode (the order alternates between rounds, so machine noise hits every mode), a
// fresh reducer and optimizer on the same model, --warmup-steps untimed steps, then --steps
// timed ones. A step, timed on every rank after a dp barrier:
//   forward_s   forward + loss
//   backward_s  backward (hooks launch the buckets when overlapping)
//   exposed_s   reducer.finish(): time blocked waiting for the reductions (exposed comm)
//   comm_s      reducer.comm_seconds(): time the reductions ran on the communication thread
//   optimizer_s AdamW step (ZeRO: sharded update + all-gather; gather_wait_s of it is the wait)
//   step_s      the whole step: zero_grad + the above
// Per step the job's step time is the slowest rank's; exposed_s and comm_s are averaged over
// ranks. Rank 0 prints one JSON line per mode: medians over timed steps and every raw number.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "trident/core/error.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/rng.hpp"
#include "trident/models/gpt.hpp"
#include "trident/parallel/data_parallel.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/mpi_runtime.hpp"
#include "trident/parallel/zero_optimizer.hpp"

using namespace trident;

namespace {

using namespace trident::bench;

using Clock = std::chrono::steady_clock;

struct Args {
  int64_t vocab = 8192, block = 64, layers = 8, heads = 8, width = 512;
  int64_t batch = 1, seq = 32, steps = 4, warmup_steps = 1, rounds = 2;
  double bucket_mb = 25;
  std::vector<std::string> modes{"overlap", "no-overlap"};
  int threads = 1;
  uint64_t seed = 1337;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Per-step numbers of one rank, gathered on every rank.
enum Field { kStep, kForward, kBackward, kExposed, kComm, kOptimizer, kGatherWait, kFields };

struct ModeResult {
  std::vector<std::vector<double>> steps;  // [timed step][rank * kFields + field]
  size_t buckets = 0, bytes = 0, state_bytes = 0;
};

void run_mode(const Args& a, const std::string& mode, models::GPT& model, MpiCommunicator& dp,
              ModeResult& out) {
  DataParallelOptions o;
  o.bucket_bytes = static_cast<size_t>(a.bucket_mb * (1 << 20));
  o.overlap = mode != "no-overlap";
  o.zero = mode == "zero";
  o.broadcast_parameters = false;  // same seed on every rank
  DataParallelReducer reducer(model.named_parameters(), dp, o);
  optim::ParamGroup decay{{}, 0.1f}, no_decay{{}, 0.0f};
  for (auto& [name, p] : model.named_parameters())
    (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  const optim::AdamWOptions adam{1e-4f, 0.9f, 0.95f, 1e-8f};
  std::unique_ptr<optim::Optimizer> opt;
  ZeroAdamW* zero = nullptr;
  if (o.zero) {
    auto z =
        std::make_unique<ZeroAdamW>(reducer, std::vector<optim::ParamGroup>{decay, no_decay}, adam);
    zero = z.get();
    opt = std::move(z);
  } else {
    opt = std::make_unique<optim::AdamW>(std::vector<optim::ParamGroup>{decay, no_decay}, adam);
  }
  out.buckets = reducer.buckets().size();
  out.bytes = reducer.bytes_per_step();
  out.state_bytes = zero ? zero->state_bytes() : 2 * reducer.bytes_per_step();

  const int p = dp.size();
  for (int64_t step = 0; step < a.warmup_steps + a.steps; ++step) {
    const Tensor ids = random_tokens(a.seed, a.vocab, a.batch, a.seq, 1, step, dp.rank());
    const Tensor targets = random_tokens(a.seed, a.vocab, a.batch, a.seq, 2, step, dp.rank());
    dp.barrier();
    const auto t0 = Clock::now();
    opt->zero_grad();
    Tensor loss = model.loss(ids, targets);
    const double forward_s = seconds_since(t0);
    const auto t1 = Clock::now();
    reducer.prepare(true);
    loss.backward();
    const double backward_s = seconds_since(t1);
    reducer.finish();
    const auto t3 = Clock::now();
    opt->step();
    const double optimizer_s = seconds_since(t3);
    const double step_s = seconds_since(t0);
    std::vector<double> mine{step_s,
                             forward_s,
                             backward_s,
                             reducer.exposed_comm_seconds(),
                             reducer.comm_seconds(),
                             optimizer_s,
                             zero ? zero->exposed_gather_seconds() : 0.0};
    std::vector<double> all(static_cast<size_t>(kFields * p));
    dp.all_gather(mine.data(), all.data(), kFields, DType::F64);
    if (step >= a.warmup_steps) out.steps.push_back(all);
  }
}

int run(const Args& a, int argc, char** argv) {
  auto dp = MpiCommunicator::world("dp");
  const int p = dp->size();
  omp_set_num_threads(a.threads);
  for (const auto& m : a.modes)
    TRIDENT_CHECK(m == "overlap" || m == "no-overlap" || m == "zero", "--modes: unknown mode '", m,
                  "' (overlap, no-overlap, zero)");

  models::GPTConfig cfg;
  cfg.vocab_size = a.vocab;
  cfg.block_size = a.block;
  cfg.n_layer = a.layers;
  cfg.n_head = a.heads;
  cfg.n_embd = a.width;
  cfg.dropout = 0.0f;
  TRIDENT_CHECK(a.seq <= a.block, "--seq ", a.seq, " exceeds --block ", a.block);
  models::GPT model(cfg, a.seed);

  std::string command = "trident-bench-dp-overlap";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];

  std::vector<ModeResult> results(a.modes.size());
  for (int64_t round = 0; round < a.rounds; ++round) {
    for (size_t k = 0; k < a.modes.size(); ++k) {
      const size_t i = round % 2 == 0 ? k : a.modes.size() - 1 - k;
      run_mode(a, a.modes[i], model, *dp, results[i]);
    }
  }
  if (dp->rank() != 0) return 0;

  for (size_t i = 0; i < a.modes.size(); ++i) {
    const ModeResult& r = results[i];
    auto field = [&](int rank, Field f) {
      std::vector<double> v;
      for (const auto& row : r.steps) v.push_back(row[static_cast<size_t>(rank * kFields + f)]);
      return v;
    };
    std::vector<double> step_s, exposed_s, comm_s, backward_s, forward_s, optimizer_s;
    for (const auto& row : r.steps) {
      double longest = 0, exposed = 0, comm = 0, bwd = 0, fwd = 0, optim_s = 0;
      for (int rk = 0; rk < p; ++rk) {
        const double* f = &row[static_cast<size_t>(rk * kFields)];
        longest = std::max(longest, f[kStep]);
        exposed += f[kExposed] / p;
        comm += f[kComm] / p;
        bwd += f[kBackward] / p;
        fwd += f[kForward] / p;
        optim_s += f[kOptimizer] / p;
      }
      step_s.push_back(longest);
      exposed_s.push_back(exposed);
      comm_s.push_back(comm);
      backward_s.push_back(bwd);
      forward_s.push_back(fwd);
      optimizer_s.push_back(optim_s);
    }
    nlohmann::json ranks = nlohmann::json::array();
    for (int rk = 0; rk < p; ++rk) {
      ranks.push_back({{"rank", rk},
                       {"step_s", field(rk, kStep)},
                       {"forward_s", field(rk, kForward)},
                       {"backward_s", field(rk, kBackward)},
                       {"exposed_s", field(rk, kExposed)},
                       {"comm_s", field(rk, kComm)},
                       {"optimizer_s", field(rk, kOptimizer)},
                       {"gather_wait_s", field(rk, kGatherWait)}});
    }
    const nlohmann::json result = {
        {"dp", p},
        {"mode", a.modes[i]},
        {"step_s_median", median(step_s)},
        {"forward_s_median", median(forward_s)},
        {"backward_s_median", median(backward_s)},
        {"exposed_comm_s_median", median(exposed_s)},
        {"comm_s_median", median(comm_s)},
        {"optimizer_s_median", median(optimizer_s)},
        {"step_s", step_s},
        {"exposed_comm_s", exposed_s},
        {"comm_s", comm_s},
        {"buckets", r.buckets},
        {"grad_bytes", r.bytes},
        {"optimizer_state_bytes_per_rank", r.state_bytes},
        {"ranks", ranks},
        {"config",
         {{"vocab", a.vocab},
          {"block", a.block},
          {"layers", a.layers},
          {"heads", a.heads},
          {"width", a.width},
          {"batch_per_rank", a.batch},
          {"seq", a.seq},
          {"steps", a.steps},
          {"warmup_steps", a.warmup_steps},
          {"rounds", a.rounds},
          {"bucket_mb", a.bucket_mb},
          {"params", cfg.num_parameters()}}},
        {"threads_per_rank", a.threads},
        {"machine", machine_json()},
        {"date", utc_now()},
        {"command", command},
    };
    std::printf("%s\n", result.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{
      "Data-parallel gradient reduction overlapped with backward, or not (run under mpirun; "
      "dp = number of ranks; rank 0 prints one JSON line per mode)"};
  app.add_option("--vocab", a.vocab, "Vocabulary size")->capture_default_str();
  app.add_option("--block", a.block, "Block size (rows of wpe)")->capture_default_str();
  app.add_option("--layers", a.layers, "Transformer blocks")->capture_default_str();
  app.add_option("--heads", a.heads, "Attention heads")->capture_default_str();
  app.add_option("--width", a.width, "Embedding width")->capture_default_str();
  app.add_option("--batch", a.batch, "Sequences per rank and step")->capture_default_str();
  app.add_option("--seq", a.seq, "Tokens per sequence")->capture_default_str();
  app.add_option("--bucket-mb", a.bucket_mb, "Gradient bucket size (MiB)")->capture_default_str();
  app.add_option("--modes", a.modes, "overlap, no-overlap, zero")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--steps", a.steps, "Timed steps per mode and round")->capture_default_str();
  app.add_option("--warmup-steps", a.warmup_steps, "Untimed steps first")->capture_default_str();
  app.add_option("--rounds", a.rounds, "Rounds over the modes (order alternates)")
      ->capture_default_str();
  app.add_option("--threads", a.threads, "OpenMP threads per rank")->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the weights and the tokens")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  MpiRuntime mpi(&argc, &argv);
  return run_guarded([&] { return run(a, argc, argv); });
}
