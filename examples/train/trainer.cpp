// trident-train's training loop over a dp x pp x tp job (one process is the 1 x 1 x 1 case).
//
// Per step: every data-parallel rank takes its micro-batches of the global batch, runs them
// through its pipeline stage (a schedule when pp > 1), the reducer averages gradients over dp
// while backward runs, the tied embedding's gradient is summed between first and last stage,
// gradients are clipped by their global norm, and the optimizer (ZeRO-1 sharded or not) steps.
// World rank 0 logs; bad input found before the job's collectives are built is reported once.
//
// Host synchronisation: on one GPU (no pipeline, no ZeRO) none inside a step: the loss, the
// gradient norm, clipping, the non-finite check and the optimizer's lr and step count stay in
// device memory (device_step.hpp) and the host reads the numbers back once per log line (and
// before an evaluation or a checkpoint). Other layouts read the device back once a step, for the
// numbers the decisions after backward need (the gradient norm for clipping, then the loss,
// both before the optimizer step, which a non-finite value skips). Token ids and targets are
// checked against the vocabulary on the host when the data is loaded (token_dataset.cpp),
// before they are uploaded, so the device kernels never report bad ids back.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>

#include "checkpointing.hpp"
#include "device_step.hpp"
#include "model_io.hpp"
#include "setup.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/io/data.hpp"
#include "trident/models/gpt_stage.hpp"
#include "trident/parallel/data_parallel.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/pipeline.hpp"
#include "trident/parallel/process_group_factory.hpp"
#include "trident/parallel/zero_optimizer.hpp"
#include "trident/trace/trace.hpp"

namespace trident::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Plan {
  ParallelLayout layout;
  models::GPTConfig cfg;
  DataSplit data;
};

// Everything that can be wrong with the flags or the inputs, checked before any collective.
Plan validate(const Options& opt, int world_size) {
  Plan p;
  p.layout = resolve_layout(world_size, opt.dp, opt.tp, opt.pp);
  p.cfg = resolve_model_config(opt);
  check_sizes(opt, p.cfg);
  const auto& L = p.layout;
  TRIDENT_CHECK(p.cfg.n_head % L.tp == 0, "--tp ", L.tp, " does not divide ", p.cfg.n_head,
                " attention heads");
  TRIDENT_CHECK(p.cfg.table_rows() % L.tp == 0, "--tp ", L.tp,
                " does not divide the vocabulary of ", p.cfg.table_rows(), " tokens");
  TRIDENT_CHECK(p.cfg.table_rows() / L.tp > p.cfg.table_rows() - p.cfg.vocab_size, "--tp ", L.tp,
                " gives slices of ", p.cfg.table_rows() / L.tp, " rows, no more than the ",
                p.cfg.table_rows() - p.cfg.vocab_size,
                " padding rows: a slice would hold padding only (pad less)");
  TRIDENT_CHECK(p.cfg.n_layer % L.pp == 0, "--pp ", L.pp, " does not divide the model's ",
                p.cfg.n_layer, " layers");
  TRIDENT_CHECK(opt.zero == 0 || opt.optimizer == "adamw",
                "--zero 1 shards AdamW state: use "
                "--optimizer adamw");
  TRIDENT_CHECK(opt.bucket_mb > 0, "--bucket-mb must be positive");
  TRIDENT_CHECK(opt.nan_policy == "stop" || opt.nan_policy == "skip",
                "--nan-policy must be stop "
                "or skip, got '",
                opt.nan_policy, "'");
  TRIDENT_CHECK(opt.checkpoint_every >= 0 && opt.keep_checkpoints >= 0 && opt.fault_nan_step >= 0,
                "--checkpoint-every, --keep-checkpoints and --fault-nan-step must not be negative");
  TRIDENT_CHECK(opt.resume_from.empty() || std::filesystem::exists(opt.resume_from),
                "--resume-from ", opt.resume_from, ": no such file");
  const Device device = resolve_device(opt.device);
  backend_for(device);                     // a CUDA device without a CUDA build or GPU fails here
  resolve_comm_backend(opt.comm, device);  // --comm nccl without a GPU or NCCL fails here
  p.data = load_data(opt, p.cfg.vocab_size);
  return p;
}

// The global batch of step s is split into dp x m micro-batches; rank d's k-th is piece
// d * m + k, so any layout consumes the same tokens as one rank with dp * m * batch sequences.
std::vector<MicroBatch> micro_batches(const data::TokenLoader& loader, int64_t step,
                                      const Topology& topo, int64_t m, Device device) {
  trace::Span span("load batch", trace::Category::Data);
  std::vector<MicroBatch> out;
  const int64_t dp = topo.layout().dp;
  for (int64_t k = 0; k < m; ++k) {
    auto [x, y] = loader.batch(step * dp * m + topo.dp_rank() * m + k, device);
    out.push_back({x, y});
  }
  return out;
}

// Global gradient norm: every parameter element counted once over the job (tp-replicated
// parameters on tp rank 0 only, the tied embedding on the first stage only): parameter i's
// weight in this rank's sum of squares, 1 or 0.
std::vector<double> global_grad_norm_weights(const models::GPT& model) {
  const ParallelContext& ctx = model.parallel();
  const auto specs = model.named_shard_specs();
  std::vector<double> weight(specs.size(), 1.0);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].second.sharded() && ctx.topology().tp_rank() != 0) weight[i] = 0;
    if (specs[i].first == "wte.weight" && !model.is_first_stage()) weight[i] = 0;
  }
  return weight;
}
double global_grad_norm(const models::GPT& model, DataParallelReducer& reducer,
                        Communicator& world) {
  const ParallelContext& ctx = model.parallel();
  double sq = reducer.grad_sum_squares_local(global_grad_norm_weights(model));
  // Without ZeRO every dp replica holds the same reduced gradients: count one of them.
  if (!reducer.options().zero && ctx.topology().dp_rank() != 0) sq = 0;
  world.all_reduce(&sq, 1, DType::F64, ReduceOp::Sum);
  return std::sqrt(sq);
}

// Mean loss over the first `batches` global batches of the validation tokens, each split into
// micro-batches exactly as in training (so any layout evaluates the same sequences).
double evaluate(models::GPT& model, const data::TokenLoader& loader, int64_t batches, int64_t m,
                Device device, Communicator& dp) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const ParallelContext& ctx = model.parallel();
  Communicator& ppc = ctx.pp();
  const Topology& topo = ctx.topology();
  double total = 0;
  for (int64_t k = 0; k < batches; ++k) {
    for (const MicroBatch& mb : micro_batches(loader, k, topo, m, device)) {
      Tensor in = mb.inputs;
      if (!model.is_first_stage()) {
        in = Tensor::empty({in.size(0), in.size(1), model.config().n_embd}, DType::F32, device);
        ppc.recv(in.raw_data(), static_cast<size_t>(in.numel()), in.dtype(), topo.pp_rank() - 1,
                 71);
      }
      Tensor h = model.forward_stage(in).contiguous();
      double loss = 0;
      if (!model.is_last_stage()) {
        ppc.send(h.raw_data(), static_cast<size_t>(h.numel()), h.dtype(), topo.pp_rank() + 1, 71);
      } else {
        loss = model.head_loss(h, mb.targets).item();
      }
      ppc.broadcast(&loss, 1, DType::F64, ppc.size() - 1);
      total += loss;
    }
  }
  dp.all_reduce(&total, 1, DType::F64, ReduceOp::Avg);
  model.train(was_training);
  return total / static_cast<double>(batches * m);
}

// --trace FILE: this rank's recorder, with a time zero shared by every rank. Ranks on one host
// share the monotonic clock: rank 0's reading is the zero everywhere. Across hosts, each rank
// estimates its offset to rank 0 as rank 0's reading after a barrier minus its own, the median
// of 5 rounds (error: the spread of barrier exits, microseconds on a fast network).
std::unique_ptr<trace::Session> start_trace(const Options& opt, const Topology& topo,
                                            Communicator& world, const models::GPTConfig& cfg,
                                            Device device, double tokens_per_step) {
  if (opt.trace.empty()) return nullptr;
  const ParallelLayout& L = topo.layout();
  trace::SessionOptions so;
  so.rank = topo.world_rank();
  so.world_size = topo.world_size();
  so.process_name = str_cat("rank ", so.rank, " (dp ", topo.dp_rank(), ", pp ", topo.pp_rank(),
                            ", tp ", topo.tp_rank(), ")");
  auto session = std::make_unique<trace::Session>(so);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  int64_t hash[2];
  hash[0] = static_cast<int64_t>(std::hash<std::string>{}(host) >> 1);
  hash[1] = -hash[0];
  world.all_reduce(hash, 2, DType::I64, ReduceOp::Max);  // max and -min
  const bool one_host = hash[0] == -hash[1];
  std::vector<int64_t> offsets;
  for (int round = 0; round < (one_host ? 1 : 5); ++round) {
    world.barrier();
    const int64_t local = trace::now_ns();
    int64_t t0 = local;
    world.broadcast(&t0, 1, DType::I64, 0);
    offsets.push_back(t0 - local);
  }
  std::sort(offsets.begin(), offsets.end());
  const int64_t offset = one_host ? 0 : offsets[offsets.size() / 2];
  int64_t zero = trace::now_ns() + offset;
  world.broadcast(&zero, 1, DType::I64, 0);  // rank 0's clock
  session->set_time_zero(zero - offset);
  session->set_metadata("clock_sync",
                        one_host ? std::string("one host: shared monotonic clock")
                                 : str_cat("barrier offsets, median of 5 rounds, "
                                           "spread ",
                                           (offsets.back() - offsets.front()) / 1000, " us"));
  session->set_metadata("clock_offset_ns", offset);
  session->set_metadata("hostname", std::string(host));
  session->set_metadata("layout", str_cat("dp ", L.dp, " x pp ", L.pp, " x tp ", L.tp));
  session->set_metadata("dp", static_cast<int64_t>(L.dp));
  session->set_metadata("pp", static_cast<int64_t>(L.pp));
  session->set_metadata("tp", static_cast<int64_t>(L.tp));
  session->set_metadata("dp_rank", static_cast<int64_t>(topo.dp_rank()));
  session->set_metadata("pp_rank", static_cast<int64_t>(topo.pp_rank()));
  session->set_metadata("tp_rank", static_cast<int64_t>(topo.tp_rank()));
  session->set_metadata("model", cfg.describe());
  session->set_metadata("device", device.str());
  session->set_metadata("micro_batches", opt.micro_batches);
  session->set_metadata("schedule", opt.schedule);
  session->set_metadata("tokens_per_step", tokens_per_step);
  // Model FLOPs of one step of the whole job (6N + attention per token, cfg.flops_per_token).
  session->set_metadata("flops_per_step", cfg.flops_per_token(opt.seq) * tokens_per_step);
  const double peak = peak_flops_per_rank(device, opt.precision);
  if (peak > 0) {
    session->set_metadata("peak_flops_per_rank", peak);
  } else {
    session->set_metadata_null("peak_flops_per_rank");
  }
  return session;
}

}  // namespace

int run_train(const Options& opt) {
  auto world = MpiCommunicator::world();
  world->set_timeout(std::chrono::milliseconds(static_cast<int64_t>(opt.comm_timeout_s * 1000)));
  // Bad input is found on every rank alike; the lowest rank that found it reports it once.
  Plan plan;
  std::string error;
  try {
    plan = validate(opt, world->size());
  } catch (const Error& e) {
    error = e.what();
  }
  if (any_rank_failed(*world, error)) return 1;

  const Topology topo(world->rank(), world->size(), plan.layout);
  const Device device = resolve_device(opt.device);
  // MPI for the CPU, NCCL for GPUs (--comm overrides); host scalars always go through MPI.
  const auto groups = make_comm_groups(*world, topo, device, opt.comm);
  groups->set_timeout(world->timeout());
  const ParallelContext ctx(*groups);
  const models::GPTConfig& cfg = plan.cfg;
  auto model = build_model(opt, cfg, device, &ctx);
  const bool log = topo.world_rank() == 0;
  const int64_t m = opt.micro_batches, dp = plan.layout.dp, pp = plan.layout.pp;

  DataParallelOptions dpo;
  dpo.bucket_bytes = static_cast<size_t>(opt.bucket_mb * (1 << 20));
  dpo.overlap = !opt.no_overlap;
  dpo.zero = opt.zero == 1;
  if (pp > 1 && (model->is_first_stage() || model->is_last_stage()))
    dpo.solo_params = {"wte.weight"};
  DataParallelReducer reducer(model->named_parameters(), ctx.dp(), dpo);

  // Matrices (and embeddings) are decayed; biases and LayerNorm parameters are not.
  optim::ParamGroup decay{{}, opt.weight_decay}, no_decay{{}, 0.0f};
  for (auto& [name, p] : model->named_parameters())
    (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  std::vector<optim::ParamGroup> param_groups{decay, no_decay};
  const optim::AdamWOptions adam{opt.lr, opt.beta1, opt.beta2, opt.eps};
  std::unique_ptr<optim::Optimizer> optimizer;
  if (dpo.zero) {
    optimizer = std::make_unique<ZeroAdamW>(reducer, param_groups, adam);
  } else if (opt.optimizer == "sgd") {
    optimizer = std::make_unique<optim::SGD>(
        param_groups, optim::SGDOptions{opt.lr, opt.momentum, 0.0f, opt.nesterov});
  } else {
    optimizer = std::make_unique<optim::AdamW>(param_groups, adam);
  }
  const optim::CosineSchedule schedule{opt.lr, opt.min_lr, opt.warmup,
                                       std::max<int64_t>(opt.steps, 1)};
  RunInfo run_info{&opt,
                   cfg,
                   plan.layout,
                   dpo.zero || opt.optimizer != "sgd" ? "adamw" : "sgd",
                   plan.data.description,
                   dp * m * opt.batch,
                   opt.checkpoint_dir.empty() ? opt.out_dir + "/checkpoints" : opt.checkpoint_dir};
  const int64_t start_step = resume_if_asked(run_info, *model, *optimizer, *world);
  if (start_step < 0) return 1;
  // Periodic and final checkpoints when asked; a preemption signal always writes one.
  const bool checkpoints = !opt.checkpoint_dir.empty() || opt.checkpoint_every > 0;
  install_preemption_handlers();
  std::unique_ptr<PipelineSchedule> pipeline;
  std::unique_ptr<models::GPTStage> stage;
  if (pp > 1) {
    pipeline = make_pipeline_schedule(opt.schedule);
    stage = std::make_unique<models::GPTStage>(*model);
  }

  data::TokenLoader train_loader(std::move(plan.data.train), opt.batch, opt.seq);
  data::TokenLoader val_loader(std::move(plan.data.val), opt.batch, opt.seq);
  // Validation: the first global batches of the held-out tokens (about 20 x 1024 tokens, or
  // --eval-batches), never more than the held-out tokens hold.
  const int64_t global_tokens = dp * m * opt.batch * opt.seq;
  const int64_t wanted_batches =
      opt.eval_batches > 0 ? opt.eval_batches : (20 * 1024 + global_tokens - 1) / global_tokens;
  const int64_t val_batches = std::max<int64_t>(
      1, std::min<int64_t>(wanted_batches, (val_loader.num_tokens() - 1) / global_tokens));
  // A progress bar only for an interactive single process (mpirun gives ranks a pty too).
  const bool tty = log && world->size() == 1 && isatty(STDOUT_FILENO) != 0;
  std::FILE* metrics = nullptr;
  if (log) {
    std::filesystem::create_directories(opt.out_dir);
    metrics = std::fopen((opt.out_dir + "/metrics.jsonl").c_str(), start_step > 0 ? "a" : "w");
    TRIDENT_CHECK(metrics != nullptr, "cannot write ", opt.out_dir, "/metrics.jsonl");
  }
  if (metrics) {
    // The first line of a run (and of each resume): what ran, resolved, and with which version.
    // Float options as the user wrote them (0.95, not 0.949999988079071).
    const auto f = [](float x) { return std::stod(str_cat(std::setprecision(7), x)); };
    nlohmann::json head;
    head["version"] = TRIDENT_VERSION;
    head["start_step"] = start_step;
    head["model"] = {
        {"preset", opt.model},     {"vocab", cfg.vocab_size},  {"padded_vocab", cfg.table_rows()},
        {"block", cfg.block_size}, {"layers", cfg.n_layer},    {"heads", cfg.n_head},
        {"width", cfg.n_embd},     {"dropout", f(opt.dropout)}};
    head["layout"] = {
        {"world", world->size()},     {"dp", plan.layout.dp},  {"tp", plan.layout.tp},
        {"pp", plan.layout.pp},       {"micro_batches", m},    {"zero", opt.zero},
        {"schedule", opt.schedule},   {"comm", opt.comm},      {"device", device.str()},
        {"precision", opt.precision}, {"threads", opt.threads}};
    head["data"] = {{"description", plan.data.description},
                    {"batch", opt.batch},
                    {"seq", opt.seq},
                    {"global_tokens_per_step", global_tokens},
                    {"shuffle", opt.shuffle}};
    head["optimizer"] = {{"name", opt.optimizer},    {"lr", f(opt.lr)},
                         {"min_lr", f(opt.min_lr)},  {"warmup", opt.warmup},
                         {"steps", opt.steps},       {"weight_decay", f(opt.weight_decay)},
                         {"beta1", f(opt.beta1)},    {"beta2", f(opt.beta2)},
                         {"eps", f(opt.eps)},        {"momentum", f(opt.momentum)},
                         {"nesterov", opt.nesterov}, {"grad_clip", f(opt.grad_clip)}};
    head["run"] = {{"seed", opt.seed},
                   {"out_dir", opt.out_dir},
                   {"checkpoint_dir", opt.checkpoint_dir},
                   {"nan_policy", opt.nan_policy}};
    std::fprintf(metrics, "%s\n", nlohmann::json{{"config", head}}.dump().c_str());
    std::fflush(metrics);
  }
  if (log) {
    std::printf("trident-train: %s on %s%s\n", cfg.describe().c_str(), device.str().c_str(),
                opt.precision == "bf16" ? ", bf16 mixed precision" : "");
    std::printf("layout: dp %d x pp %d x tp %d on %d ranks%s%s\n", plan.layout.dp, plan.layout.pp,
                plan.layout.tp, world->size(), dpo.zero ? ", ZeRO-1" : "",
                pp > 1 ? (", " + opt.schedule + " schedule").c_str() : "");
    std::printf("data: %s\n", plan.data.description.c_str());
    std::printf(
        "global batch %lld sequences (dp %lld x %lld micro-batches x %lld) of %lld tokens, "
        "%lld steps, %s lr %.3g (warmup %lld, cosine to %.3g)\n",
        static_cast<long long>(dp * m * opt.batch), static_cast<long long>(dp),
        static_cast<long long>(m), static_cast<long long>(opt.batch),
        static_cast<long long>(opt.seq), static_cast<long long>(opt.steps),
        dpo.zero ? "zero-adamw" : opt.optimizer.c_str(), opt.lr, static_cast<long long>(opt.warmup),
        opt.min_lr);
    std::fflush(stdout);
  }

  Allocator& alloc = allocator_for(device);
  const double tokens_per_step = static_cast<double>(dp * m * opt.batch * opt.seq);
  const double flops_per_step = cfg.flops_per_token(opt.seq) * tokens_per_step;
  const double peak_flops =
      peak_flops_per_rank(device, opt.precision) * world->size();  // 0: unknown (CPU)
  const auto tracing = start_trace(opt, topo, *world, cfg, device, tokens_per_step);
  const auto run_start = Clock::now();
  double win_time = 0, win_comm = 0, win_bubble = 0, last_loss = 0;
  int64_t win_steps = 0;
  // On one GPU (no pipeline, no ZeRO) the step's bookkeeping stays on the device: no host
  // synchronisation between log lines (device_step.hpp). Elsewhere the host reads the loss and
  // the gradient norm back every step.
  std::unique_ptr<DeviceStep> dstep;
  std::vector<double> norm_weights;
  if (device.is_cuda() && world->size() == 1 && pp == 1 && !dpo.zero) {
    dstep = std::make_unique<DeviceStep>(device, schedule, std::max<int64_t>(opt.steps, 1),
                                         std::max<int64_t>(opt.log_interval, 1), m, start_step,
                                         optimizer->steps_taken());
    optimizer->use_step_scalars(dstep->scalars());
    norm_weights = global_grad_norm_weights(*model);
  }
  // What a step's metrics line and log line say; with a device step, filled in at the read-back.
  struct StepRecord {
    int64_t step = 0;
    bool line = false, have_norm = false, nonfinite = false;
    double loss = 0, grad_norm = 0, step_s = 0, comm_s = 0, bubble_s = 0;
    float lr = 0;
    size_t peak_bytes = 0;
    long long host_syncs = -1, mallocs = -1;  // during the step, where the emulation counts
  };
  std::vector<StepRecord> pending;  // device steps not yet read back
  const auto report = [&](const StepRecord& r) {
    const int64_t step = r.step;
    last_loss = r.loss;
    if (metrics) {
      // mfu: model FLOPs per second over the job's peak; null where the peak is unknown (CPU).
      // 17 digits: a resumed run's losses can be compared bit for bit; JSON has no NaN.
      const std::string loss_json =
          std::isfinite(r.loss) ? str_cat(std::setprecision(17), r.loss) : "null";
      const std::string mfu =
          peak_flops > 0 ? str_cat(flops_per_step / r.step_s / peak_flops) : std::string("null");
      const std::string norm_json = r.have_norm && std::isfinite(r.grad_norm)
                                        ? str_cat(std::setprecision(9), r.grad_norm)
                                        : "null";
      const std::string syncs = r.host_syncs >= 0 ? str_cat(", \"host_syncs\": ", r.host_syncs,
                                                            ", \"device_mallocs\": ", r.mallocs)
                                                  : std::string();
      std::fprintf(metrics,
                   "{\"step\": %lld, \"loss\": %s, \"grad_norm\": %s, \"lr\": %.9g, "
                   "\"tokens_per_s\": %.1f, "
                   "\"step_ms\": %.3f, \"exposed_comm_ms\": %.3f, \"bubble_ms\": %.3f, "
                   "\"peak_mem_bytes\": %zu, \"mfu\": %s%s}\n",
                   static_cast<long long>(step + 1), loss_json.c_str(), norm_json.c_str(),
                   static_cast<double>(r.lr), tokens_per_step / r.step_s, 1000 * r.step_s,
                   1000 * r.comm_s, 1000 * r.bubble_s, r.peak_bytes, mfu.c_str(), syncs.c_str());
      std::fflush(metrics);
    }
    win_time += r.step_s;
    win_comm += r.comm_s;
    win_bubble += r.bubble_s;
    ++win_steps;
    if (log && r.line) {
      if (tty) std::printf("\r\033[K");
      const double ms = 1000.0 * win_time / static_cast<double>(win_steps);
      std::printf(
          "step %5lld/%lld | loss %.4f | lr %.3e | gnorm %.3f | %8.0f tok/s | %7.1f "
          "ms/step (comm %.1f, bubble %.1f) | peak mem %s%s\n",
          static_cast<long long>(step + 1), static_cast<long long>(opt.steps), last_loss, r.lr,
          r.grad_norm, tokens_per_step * static_cast<double>(win_steps) / win_time, ms,
          1000.0 * win_comm / static_cast<double>(win_steps),
          1000.0 * win_bubble / static_cast<double>(win_steps), human_bytes(r.peak_bytes).c_str(),
          // MFU on GPUs: the job's model FLOP/s over its ranks' dense peak.
          peak_flops > 0 ? str_cat(" | MFU ", std::setprecision(3),
                                   100.0 * flops_per_step * static_cast<double>(win_steps) /
                                       win_time / peak_flops,
                                   "%")
                               .c_str()
                         : "");
    } else if (tty) {
      const int width = 30;
      const int filled = static_cast<int>(width * (step + 1) / opt.steps);
      std::printf("\r\033[K[%s%s] %lld/%lld loss %.4f", std::string(filled, '#').c_str(),
                  std::string(width - filled, '.').c_str(), static_cast<long long>(step + 1),
                  static_cast<long long>(opt.steps), last_loss);
    }
    if (r.line) win_time = win_comm = win_bubble = 0, win_steps = 0;
  };
  const auto nonfinite_error = [&](const StepRecord& r) {
    if (log) {
      std::fprintf(stderr,
                   "trident-train: error: step %lld: the loss (%g) or gradient norm (%g) "
                   "is not finite; stopping (lower --lr, enable --grad-clip, or --nan-policy "
                   "skip)\n",
                   static_cast<long long>(r.step + 1), r.loss, r.grad_norm);
    }
  };
  const auto update_skipped = [&](const StepRecord& r) {
    if (log)
      std::printf(
          "step %5lld | loss %g, gradient norm %g: not finite, update skipped "
          "(--nan-policy skip)\n",
          static_cast<long long>(r.step + 1), r.loss, r.grad_norm);
  };
  for (int64_t step = start_step; step < opt.steps; ++step) {
    const auto t0 = Clock::now();
    const long long syncs0 = cuda_emulated_host_syncs(), mallocs0 = cuda_emulated_mallocs();
    std::optional<trace::Span> step_span;  // ends before validation
    step_span.emplace("step", trace::Category::Step);
    step_span->arg("step", step + 1);
    const std::vector<MicroBatch> mbs = micro_batches(train_loader, step, topo, m, device);
    {
      trace::Span span("zero_grad", trace::Category::Optimizer);
      optimizer->zero_grad();
    }
    double loss_sum = 0, bubble = 0;
    // Each micro-batch's (scaled) loss stays on the device until the one read-back of the step,
    // after the gradients are reduced: no host synchronisation per micro-batch.
    Tensor micro_losses;
    if (pp == 1) {
      micro_losses = dstep ? dstep->micro_losses() : Tensor::zeros({m}, DType::F32, device);
      for (int64_t k = 0; k < m; ++k) {
        Tensor loss;
        {
          trace::Span span("forward", trace::Category::Compute);
          span.arg("micro", k);
          const trace::DeviceSpan gpu_span("forward", trace::Category::Compute, device);
          loss = model->loss(mbs[k].inputs, mbs[k].targets);
          if (m > 1) loss = loss * (1.0 / static_cast<double>(m));
        }
        trace::Span span("backward", trace::Category::Compute);
        span.arg("micro", k);
        const trace::DeviceSpan gpu_span("backward", trace::Category::Compute, device);
        reducer.prepare(k == m - 1);
        loss.backward();
        NoGradGuard no_grad;
        micro_losses.slice(0, k, k + 1).copy_(loss.detach().reshape({1}).to(DType::F32));
      }
    } else {
      const PipelineStepStats st =
          pipeline->run(*stage, mbs, ctx.pp(), [&](int, bool last) { reducer.prepare(last); });
      loss_sum = st.loss;
      bubble = st.comm_wait_s;
    }
    reducer.finish();
    if (Communicator* emb = ctx.embedding_group()) {
      trace::Span span("tied embedding grad", trace::Category::Comm);
      reducer.all_reduce_param_grad("wte.weight", *emb);
    }
    // The norm is computed for clipping, and on log lines (every rank: it is a collective).
    const bool line = (step + 1) % opt.log_interval == 0 || step + 1 == opt.steps || step == 0;
    StepRecord rec;
    rec.step = step;
    rec.line = line;
    rec.bubble_s = bubble;
    // What both step paths record once the optimizer has run.
    auto finish_record = [&] {
      rec.lr = optimizer->lr();
      rec.comm_s = reducer.exposed_comm_seconds();
      rec.peak_bytes = alloc.stats().peak_bytes;
      rec.step_s = seconds_since(t0);
      if (syncs0 >= 0) {
        rec.host_syncs = cuda_emulated_host_syncs() - syncs0;
        rec.mallocs = cuda_emulated_mallocs() - mallocs0;
      }
    };
    StepVerdict verdict;
    int64_t log_begin = 0;
    if (dstep) {
      dstep->finish(reducer, norm_weights, opt.grad_clip, opt.nan_policy == "stop",
                    opt.fault_nan_step);
      verdict = agree_on_step(*world, false);  // the preemption signal; the device checks NaNs
      {
        trace::Span span("optimizer step", trace::Category::Optimizer);
        const trace::DeviceSpan gpu_span("optimizer step", trace::Category::Optimizer, device);
        optimizer->set_lr(schedule.lr(step));  // what the device reads from its table
        optimizer->step();
      }
      rec.have_norm = true;
      finish_record();
      pending.push_back(rec);
      log_begin = trace::enabled() ? trace::now_ns() : 0;
      const bool eval_due =
          opt.eval_interval > 0 && (step + 1) % opt.eval_interval == 0 && step + 1 < opt.steps;
      const bool ckpt_due =
          checkpoints && ((opt.checkpoint_every > 0 && (step + 1) % opt.checkpoint_every == 0) ||
                          step + 1 == opt.steps);
      if (line || eval_due || ckpt_due || verdict.stop_signal != 0) {
        // The read-back: the host waits for the device once, here; its wait counts as the
        // last pending step's time.
        const auto t_read = Clock::now();
        const std::vector<DeviceStep::Numbers> nums =
            dstep->read(pending.front().step, static_cast<int64_t>(pending.size()));
        pending.back().step_s += seconds_since(t_read);
        int64_t skipped = 0;
        for (size_t i = 0; i < pending.size(); ++i) {
          StepRecord& r = pending[i];
          r.loss = nums[i].loss;
          r.grad_norm = nums[i].grad_norm;
          r.nonfinite = nums[i].nonfinite;
          if (r.nonfinite && opt.nan_policy == "stop") {
            nonfinite_error(r);  // the device skipped every update from this step on
            return 1;
          }
          if (r.nonfinite) {
            update_skipped(r);
            ++skipped;
          }
          report(r);
        }
        optimizer->set_steps_taken(optimizer->steps_taken() - skipped);
        pending.clear();
      }
    } else {
      double grad_norm = 0;
      const bool have_norm = opt.grad_clip > 0 || line;
      if (have_norm) {
        trace::Span span("grad norm", trace::Category::Optimizer);
        grad_norm = global_grad_norm(*model, reducer, *world);
      }
      if (opt.grad_clip > 0) {
        trace::Span span("clip grad norm", trace::Category::Optimizer);
        const double coef = opt.grad_clip / (grad_norm + 1e-6);
        if (coef < 1.0) reducer.scale_grads(coef);
      }
      if (micro_losses.defined()) {
        for (const float l : micro_losses.to_vector<float>()) loss_sum += l;
      }
      ctx.dp().all_reduce(&loss_sum, 1, DType::F64, ReduceOp::Avg);
      if (opt.fault_nan_step == step + 1) loss_sum = std::nan("");
      rec.loss = loss_sum;
      rec.grad_norm = grad_norm;
      rec.have_norm = have_norm;
      // Every rank learns whether any saw a non-finite loss or norm, or a preemption signal.
      verdict = agree_on_step(*world, !std::isfinite(loss_sum) || !std::isfinite(grad_norm));
      if (verdict.non_finite && opt.nan_policy == "stop") {
        nonfinite_error(rec);
        return 1;
      }
      if (verdict.non_finite) {
        update_skipped(rec);
      } else {
        trace::Span span("optimizer step", trace::Category::Optimizer);
        const trace::DeviceSpan gpu_span("optimizer step", trace::Category::Optimizer, device);
        optimizer->set_lr(schedule.lr(step));
        optimizer->step();
      }
      finish_record();
      log_begin = trace::enabled() ? trace::now_ns() : 0;
      report(rec);
    }
    if (log_begin != 0) {
      trace::flush_device_spans();  // GPU spans of this step onto the "cuda:N" track
      trace::record("log", trace::Category::Other, log_begin, trace::now_ns());
      trace::counter("loss", last_loss);
      trace::counter("peak_mem_bytes", static_cast<double>(alloc.stats().peak_bytes));
    }
    step_span.reset();
    if (opt.eval_interval > 0 && (step + 1) % opt.eval_interval == 0 && step + 1 < opt.steps) {
      trace::Span span("evaluate", trace::Category::Other);
      const double val = evaluate(*model, val_loader, val_batches, m, device, ctx.dp());
      if (log) std::printf("step %5lld | val loss %.4f\n", static_cast<long long>(step + 1), val);
      if (metrics) {
        std::fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.9g}\n",
                     static_cast<long long>(step + 1), val);
        std::fflush(metrics);
      }
    }
    const bool due = opt.checkpoint_every > 0 && (step + 1) % opt.checkpoint_every == 0;
    if ((checkpoints && (due || step + 1 == opt.steps)) || verdict.stop_signal != 0) {
      trace::Span span("checkpoint", trace::Category::Checkpoint);
      double secs = 0;
      int64_t bytes = 0;
      const std::string path =
          save_checkpoint(run_info, *model, *optimizer, *world, step + 1, &secs, &bytes);
      if (path.empty()) return 1;  // every rank; the message is printed once
      std::vector<int64_t> rank_bytes(static_cast<size_t>(world->size()));
      world->all_gather(&bytes, rank_bytes.data(), 1, DType::I64);
      if (log) {
        std::printf("checkpoint written to %s in %.2f s", path.c_str(), secs);
        if (bytes >= 0) {  // the parallel writer: what each rank wrote itself
          std::printf(" (tensor bytes written by rank:");
          for (int64_t b : rank_bytes) std::printf(" %lld", static_cast<long long>(b));
          std::printf(")");
        }
        std::printf("\n");
      }
      if (verdict.stop_signal != 0) {
        if (log) {
          std::printf(
              "preempted by %s at step %lld: checkpoint %s written, exiting (resume with "
              "--resume --checkpoint-dir %s)\n",
              verdict.stop_signal == SIGUSR1 ? "SIGUSR1" : "SIGTERM",
              static_cast<long long>(step + 1), path.c_str(), run_info.checkpoint_dir.c_str());
          std::fclose(metrics);
          std::fflush(stdout);
        }
        return 0;
      }
    }
    if (log) std::fflush(stdout);
  }
  restore_default_signal_handlers();  // nothing checks the preemption flag from here on
  std::optional<trace::Span> final_eval_span;
  final_eval_span.emplace("evaluate", trace::Category::Other);
  const double val = evaluate(*model, val_loader, val_batches, m, device, ctx.dp());
  final_eval_span.reset();
  const auto full = gather_full_parameters(*model);
  if (tracing) {
    const std::string path = trace::trace_path_for_rank(opt.trace, topo.world_rank());
    tracing->write(path);
    if (log)
      std::printf("trace written to %s%s\n", path.c_str(),
                  world->size() > 1 ? str_cat(" and ", trace::trace_path_for_rank(opt.trace, 1),
                                              " .. rank", world->size() - 1)
                                          .c_str()
                                    : "");
  }
  if (log) {
    std::printf("done in %.1f s | final train loss %.4f | val loss %.4f", seconds_since(run_start),
                last_loss, val);
    if (plan.data.builtin)
      std::printf(" | best possible %.4f", data::addition_dataset_loss_floor());
    std::printf("\n");
    const std::string path = opt.out_dir + "/model.safetensors";
    save_model(full, cfg, path);
    std::printf("weights written to %s\n", path.c_str());
    std::fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.9g}\n",
                 static_cast<long long>(opt.steps), val);
    std::fprintf(metrics, "{\"final_val_loss\": %.9g}\n", val);
    std::fclose(metrics);
  }
  return 0;
}

}  // namespace trident::train
