// Pipeline bubble and activation memory of the GPipe and 1F1B schedules (parallel/pipeline.hpp),
// run by bench/pipeline_bubble.sh under mpirun: one rank per stage (pp = world size), a GPT whose
// layers split evenly over the stages, random tokens, fp32 on the CPU.
//
// For each schedule and micro-batch count m, --warmup-steps untimed steps, then --steps timed
// ones; a step is zero_grad + PipelineSchedule::run (forward and backward of m micro-batches of
// --micro-batch sequences of --seq tokens) + the tied-embedding gradient sum. No optimizer step:
// it does not touch the pipeline.
//
// Measured bubble fraction of one step:
//   idle(s)   = PipelineStepStats::comm_wait_s of stage s: the time s is blocked waiting for its
//               neighbours (receiving an activation or a gradient, completing a send, and the
//               step's opening broadcast and closing loss all-reduce, which line the stages up
//               so that fill and drain idle is counted on every stage). Bubble + transfer time.
//   bubble(s) = idle(s) / step_s(s), step_s(s) the wall time of run() on stage s
//   bubble    = mean over stages of bubble(s)
// The reported figure is the median over timed steps. Ideal (equal stages, free transfers):
// (p - 1) / (m + p - 1), the same for both schedules.
//
// Peak activation memory of stage s: PipelineStepStats::peak_activation_bytes, the allocator's
// peak during the step above the bytes in use when it began (saved activations, received
// buffers and the gradients created in the step); the maximum over timed steps.
//
// Rank 0 prints one JSON line per (schedule, m) with every stage's raw per-step numbers.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "trident/core/error.hpp"
#include "trident/core/rng.hpp"
#include "trident/models/gpt.hpp"
#include "trident/models/gpt_stage.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/mpi_runtime.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/parallel/pipeline.hpp"
#include "trident/train/trainer.hpp"

using namespace trident;

namespace {

using namespace trident::bench;

struct Args {
  int64_t vocab = 512, block = 128, layers = 8, heads = 4, width = 256;
  int64_t micro_batch = 4, seq = 128, steps = 3, warmup_steps = 1;
  std::vector<int> micro_batches{4, 8};
  std::vector<std::string> schedules{"gpipe", "1f1b"};
  int threads = 1;
  uint64_t seed = 1337;
};

// Per-step numbers of one stage, gathered on every rank (7 doubles a stage).
enum Field { kStep, kForward, kBackward, kWait, kPeak, kInFlight, kLoss, kFields };

int run(const Args& a, int argc, char** argv) {
  auto world = MpiCommunicator::world();
  const int p = world->size();
  const Topology topo(world->rank(), p, ParallelLayout{1, 1, p});
  ProcessGroups groups(*world, topo);
  ParallelContext ctx(groups);
  omp_set_num_threads(a.threads);

  models::GPTConfig cfg;
  cfg.vocab_size = a.vocab;
  cfg.block_size = a.block;
  cfg.n_layer = a.layers;
  cfg.n_head = a.heads;
  cfg.n_embd = a.width;
  cfg.dropout = 0.0f;
  TRIDENT_CHECK(a.seq <= a.block, "--seq ", a.seq, " exceeds --block ", a.block);
  models::GPT model(cfg, a.seed, Device::cpu(), &ctx);
  models::GPTStage stage(model);
  const int s = topo.pp_rank();

  std::string command = "trident-bench-pipeline";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];

  for (const std::string& name : a.schedules) {
    const auto schedule = make_pipeline_schedule(name);
    for (int m : a.micro_batches) {
      std::vector<MicroBatch> mbs;
      for (int i = 0; i < m; ++i)
        mbs.push_back({random_tokens(a.seed, a.vocab, a.micro_batch, a.seq, 1, i),
                       random_tokens(a.seed, a.vocab, a.micro_batch, a.seq, 2, i)});
      std::vector<std::vector<double>> steps;  // [step][stage * kFields + field]
      for (int64_t step = 0; step < a.warmup_steps + a.steps; ++step) {
        model.zero_grad();
        const PipelineStepStats st = schedule->run(stage, mbs, ctx.pp());
        train::reduce_tied_gradients(stage, ctx, nullptr);
        std::vector<double> mine{st.step_s,
                                 st.forward_s,
                                 st.backward_s,
                                 st.comm_wait_s,
                                 static_cast<double>(st.peak_activation_bytes),
                                 static_cast<double>(st.max_in_flight),
                                 st.loss};
        std::vector<double> all(static_cast<size_t>(kFields * p));
        world->all_gather(mine.data(), all.data(), kFields, DType::F64);
        if (step >= a.warmup_steps) steps.push_back(all);
      }
      if (s != 0) continue;

      nlohmann::json stages = nlohmann::json::array();
      std::vector<double> bubble_per_step(steps.size(), 0.0);
      for (int st = 0; st < p; ++st) {
        auto field = [&](Field f) {
          std::vector<double> v;
          for (const auto& row : steps) v.push_back(row[static_cast<size_t>(st * kFields + f)]);
          return v;
        };
        std::vector<double> bubble;
        for (size_t k = 0; k < steps.size(); ++k) {
          const double* row = &steps[k][static_cast<size_t>(st * kFields)];
          bubble.push_back(row[kWait] / row[kStep]);
          bubble_per_step[k] += row[kWait] / row[kStep] / p;
        }
        const auto peaks = field(kPeak);
        stages.push_back({{"stage", st},
                          {"step_s", field(kStep)},
                          {"forward_s", field(kForward)},
                          {"backward_s", field(kBackward)},
                          {"comm_wait_s", field(kWait)},
                          {"bubble", bubble},
                          {"bubble_median", median(bubble)},
                          {"peak_activation_bytes",
                           static_cast<int64_t>(*std::max_element(peaks.begin(), peaks.end()))},
                          {"max_in_flight", static_cast<int>(field(kInFlight).front())}});
      }
      std::vector<double> step_s;
      for (const auto& row : steps) {
        double longest = 0;
        for (int st = 0; st < p; ++st)
          longest = std::max(longest, row[static_cast<size_t>(st * kFields + kStep)]);
        step_s.push_back(longest);
      }
      const nlohmann::json result = {
          {"p", p},
          {"schedule", name},
          {"m", m},
          {"bubble_ideal", static_cast<double>(p - 1) / (m + p - 1)},
          {"bubble_measured", median(bubble_per_step)},
          {"bubble_measured_per_step", bubble_per_step},
          {"step_s_median", median(step_s)},
          {"loss", steps.back()[kLoss]},
          {"stages", stages},
          {"config",
           {{"vocab", a.vocab},
            {"block", a.block},
            {"layers", a.layers},
            {"heads", a.heads},
            {"width", a.width},
            {"micro_batch", a.micro_batch},
            {"seq", a.seq},
            {"steps", a.steps},
            {"warmup_steps", a.warmup_steps},
            {"params", cfg.num_parameters()}}},
          {"threads_per_rank", a.threads},
          {"machine", machine_json()},
          {"date", utc_now()},
          {"command", command},
      };
      std::printf("%s\n", result.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{
      "Pipeline bubble and activation memory of GPipe and 1F1B (run under mpirun; "
      "pp = number of ranks; rank 0 prints one JSON line per schedule and m)"};
  app.add_option("--vocab", a.vocab, "Vocabulary size")->capture_default_str();
  app.add_option("--block", a.block, "Block size (rows of wpe)")->capture_default_str();
  app.add_option("--layers", a.layers, "Transformer blocks (divisible by the ranks)")
      ->capture_default_str();
  app.add_option("--heads", a.heads, "Attention heads")->capture_default_str();
  app.add_option("--width", a.width, "Embedding width")->capture_default_str();
  app.add_option("--micro-batch", a.micro_batch, "Sequences per micro-batch")
      ->capture_default_str();
  app.add_option("--seq", a.seq, "Tokens per sequence")->capture_default_str();
  app.add_option("--micro-batches", a.micro_batches, "Micro-batch counts m")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--schedules", a.schedules, "gpipe, 1f1b")->delimiter(',')->capture_default_str();
  app.add_option("--steps", a.steps, "Timed steps per (schedule, m)")->capture_default_str();
  app.add_option("--warmup-steps", a.warmup_steps, "Untimed steps first")->capture_default_str();
  app.add_option("--threads", a.threads, "OpenMP threads per rank")->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the weights and the tokens")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  MpiRuntime mpi(&argc, &argv);
  return run_guarded([&] { return run(a, argc, argv); });
}
