// Trainer::fit, step by step (see trainer.hpp for what a step does). The state of one run lives
// in Trainer::Loop; each of its functions is one stage of the run:
//   prepare        reducer, optimizer, resume, loaders, pipeline, device step, trace
//   run_step       micro-batches -> forward/backward (one stage, or a pipeline schedule)
//                  -> reducer -> tied copies -> norm, clip, non-finite policy -> optimizer
//   after_step     validation, checkpoint, preemption
//   finish         final validation, trace and weights
#include "trident/train/trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "checkpointing.hpp"
#include "cuda_graph_step.hpp"
#include "device_step.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/working_copies.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/parallel/distributed_checkpoint.hpp"
#include "trident/parallel/pipeline.hpp"
#include "trident/parallel/zero_optimizer.hpp"
#include "trident/trace/trace.hpp"

namespace trident::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
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

void check_ties(const TrainableModel& model, const ParallelContext& ctx) {
  const int pp = ctx.layout().pp;
  for (const TiedParameter& tie : model.tied_parameters()) {
    TRIDENT_CHECK(tie.copies.size() == 2 && tie.copies[0].first == 0 &&
                      tie.copies[1].first == pp - 1 && pp > 1,
                  "tied parameter '", tie.copies.empty() ? "" : tie.copies[0].second,
                  "': the trainer combines copies held by the first and the last of ", pp,
                  " pipeline stages only (ParallelContext::embedding_group)");
  }
}

// Global gradient norm: every parameter element counted once over the job (tp-replicated
// parameters on tp rank 0 only, a tied parameter on the first stage holding it only): parameter
// i's weight in this rank's sum of squares, 1 or 0.
std::vector<double> grad_norm_weights(const TrainableModel& model, const ParallelContext& ctx) {
  const int stage = ctx.topology().pp_rank();
  std::set<std::string> later_copies;  // this stage's copies that another stage counts
  for (const TiedParameter& tie : model.tied_parameters()) {
    for (size_t c = 1; c < tie.copies.size(); ++c)
      if (tie.copies[c].first == stage) later_copies.insert(tie.copies[c].second);
  }
  const auto specs = model.module().named_shard_specs();
  std::vector<double> weight(specs.size(), 1.0);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!specs[i].second.sharded() && ctx.topology().tp_rank() != 0) weight[i] = 0;
    if (later_copies.count(specs[i].first) != 0) weight[i] = 0;
  }
  return weight;
}

// --trace FILE: this rank's recorder, with a time zero shared by every rank. Ranks on one host
// share the monotonic clock: rank 0's reading is the zero everywhere. Across hosts, each rank
// estimates its offset to rank 0 as rank 0's reading after a barrier minus its own, the median
// of 5 rounds (error: the spread of barrier exits, microseconds on a fast network).
std::unique_ptr<trace::Session> start_trace(const Trainer& t, double flops_per_step) {
  const TrainerOptions& opt = t.options();
  if (opt.trace.empty()) return nullptr;
  const Topology& topo = t.context().topology();
  Communicator& world = t.world();
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
                                 : str_cat("barrier offsets, median of 5 rounds, spread ",
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
  session->set_metadata("model", t.model().describe());
  session->set_metadata("device", t.model().device().str());
  session->set_metadata("micro_batches", opt.micro_batches);
  session->set_metadata("schedule", opt.schedule);
  session->set_metadata("tokens_per_step", t.tokens_per_step());
  // Model FLOPs of one step of the whole job (the model's flops_per_token x tokens).
  session->set_metadata("flops_per_step", flops_per_step);
  if (opt.peak_flops_per_rank > 0) {
    session->set_metadata("peak_flops_per_rank", opt.peak_flops_per_rank);
  } else {
    session->set_metadata_null("peak_flops_per_rank");
  }
  return session;
}

// Every parameter's full value (tp shards assembled, pipeline stages collected), written on
// world rank 0 with the model's metadata. Collective over the whole job.
void save_full_weights(const TrainableModel& model, const ParallelContext& ctx, Communicator& world,
                       const std::string& path) {
  SafetensorsWriter w;
  gather_full_state(model.module(), nullptr, ctx,
                    [&](const std::string& param, const std::string&, const Tensor& full) {
                      w.add_f32(param, full.shape(), full.to_vector<float>());
                    });
  if (world.rank() != 0) return;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  for (const auto& [key, value] : model.weights_metadata()) w.set_metadata(key, value);
  w.write(path);
}

}  // namespace

// --- tied parameters

std::vector<std::string> local_tied_parameter_names(const TrainableModel& model,
                                                    const ParallelContext& ctx) {
  std::vector<std::string> out;
  if (ctx.layout().pp == 1) return out;
  const int stage = ctx.topology().pp_rank();
  for (const TiedParameter& tie : model.tied_parameters()) {
    for (const auto& [s, name] : tie.copies)
      if (s == stage) out.push_back(name);
  }
  return out;
}

void reduce_tied_gradients(const TrainableModel& model, const ParallelContext& ctx,
                           DataParallelReducer* reducer) {
  check_ties(model, ctx);
  Communicator* group = ctx.embedding_group();
  const std::vector<std::string> names = local_tied_parameter_names(model, ctx);
  if (group == nullptr || names.empty()) return;
  trace::Span span("tied parameter grads", trace::Category::Comm);
  for (const std::string& name : names) {
    if (reducer != nullptr) {
      reducer->all_reduce_param_grad(name, *group);
      continue;
    }
    Tensor w;
    for (auto& [n, p] : model.module().named_parameters())
      if (n == name) w = p;
    TRIDENT_CHECK(w.defined(), "tied parameter '", name, "' is not a parameter of stage ",
                  ctx.topology().pp_rank());
    Tensor g = w.grad();
    if (!g.defined()) {  // this copy's share is zero (no backward ran): still take part
      g = Tensor::zeros(w.shape(), w.dtype(), w.device());
      w.set_grad(g);
    }
    TRIDENT_CHECK(g.is_contiguous(), "tied parameter '", name, "': gradient not contiguous");
    group->all_reduce(g.raw_data(), static_cast<size_t>(g.numel()), g.dtype(), ReduceOp::Sum);
  }
}

// --- one run

struct Trainer::Loop {
  Trainer& t;
  const TrainerOptions& opt;
  const Topology& topo;
  Device device;
  int64_t m;
  std::unique_ptr<DataParallelReducer> reducer;
  std::unique_ptr<optim::Optimizer> optimizer;
  optim::CosineSchedule schedule;
  RunInfo run_info;
  std::unique_ptr<PipelineSchedule> pipeline;
  std::optional<data::TokenLoader> train_loader, val_loader;
  int64_t val_batches = 1;
  std::unique_ptr<DeviceStep> dstep;
  // Mixed precision: the bf16 copies of the f32 weights the linear ops read, cast in one launch
  // per step (the first step learns which; stable addresses for a captured step;
  // destroyed after the graph that replays their cast).
  WorkingCopies working_copies;
  std::unique_ptr<CudaGraphStep> graph;  // --cuda-graphs (after dstep: destroyed first)
  std::vector<MicroBatch> graph_inputs;  // the captured step's input buffers
  std::vector<double> norm_weights;
  std::vector<StepMetrics> pending;  // device steps not yet read back
  std::unique_ptr<trace::Session> tracing;
  double flops_per_step = 0, last_loss = 0;
  Clock::time_point run_start = Clock::now();

  Loop(Trainer& trainer)
      : t(trainer),
        opt(trainer.opt_),
        topo(trainer.ctx_.topology()),
        device(trainer.model_.device()),
        m(trainer.opt_.micro_batches) {}

  TrainableModel& model() { return t.model_; }
  Communicator& world() { return t.world_; }
  template <typename F>
  void each_callback(F&& f) {
    for (auto& cb : t.callbacks_) f(*cb);
  }

  // The reducer (with the tied copies in buckets of their own) and the optimizer: AdamW or
  // SGD, matrices (and embeddings) decayed, vectors (biases, norms) not; ZeRO-1 shards AdamW.
  void build_optimizer() {
    DataParallelOptions dpo;
    dpo.bucket_bytes = static_cast<size_t>(opt.bucket_mb * (1 << 20));
    dpo.overlap = opt.overlap;
    dpo.zero = opt.zero;
    dpo.solo_params = local_tied_parameter_names(model(), t.ctx_);
    reducer = std::make_unique<DataParallelReducer>(model().module().named_parameters(),
                                                    t.ctx_.dp(), dpo);
    optim::ParamGroup decay{{}, opt.weight_decay}, no_decay{{}, 0.0f};
    for (auto& [name, p] : model().module().named_parameters())
      (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
    std::vector<optim::ParamGroup> groups{decay, no_decay};
    const optim::AdamWOptions adam{opt.lr, opt.beta1, opt.beta2, opt.eps};
    if (opt.zero) {
      optimizer = std::make_unique<ZeroAdamW>(*reducer, groups, adam);
    } else if (opt.optimizer == "sgd") {
      optimizer = std::make_unique<optim::SGD>(
          groups, optim::SGDOptions{opt.lr, opt.momentum, 0.0f, opt.nesterov});
    } else {
      optimizer = std::make_unique<optim::AdamW>(groups, adam);
    }
    schedule =
        optim::CosineSchedule{opt.lr, opt.min_lr, opt.warmup, std::max<int64_t>(opt.steps, 1)};
  }

  // Returns false (every rank) when resuming failed; the message was printed once.
  bool prepare(TrainData& data) {
    check_ties(model(), t.ctx_);
    build_optimizer();
    run_info = RunInfo{&opt,
                       &model(),
                       &t.ctx_,
                       opt.zero || opt.optimizer != "sgd" ? "adamw" : "sgd",
                       data.description,
                       t.sequences_per_step()};
    const int64_t start = resume_if_asked(run_info, model(), *optimizer, world());
    if (start < 0) return false;
    t.start_step_ = start;
    if (preemption_handled()) install_preemption_handlers();
    if (topo.layout().pp > 1) pipeline = make_pipeline_schedule(opt.schedule);
    train_loader.emplace(std::move(data.train), opt.batch, opt.seq);
    val_loader.emplace(std::move(data.val), opt.batch, opt.seq);
    // Validation: the first global batches of the held-out tokens (about 20 x 1024 tokens, or
    // eval_batches), never more than the held-out tokens hold.
    const int64_t global_tokens = t.sequences_per_step() * opt.seq;
    const int64_t wanted =
        opt.eval_batches > 0 ? opt.eval_batches : (20 * 1024 + global_tokens - 1) / global_tokens;
    val_batches = std::max<int64_t>(
        1, std::min<int64_t>(wanted, (val_loader->num_tokens() - 1) / global_tokens));
    flops_per_step = model().flops_per_token(opt.seq) * t.tokens_per_step();
    // On GPUs (no pipeline, no ZeRO; over ranks, NCCL collectives) the step's bookkeeping
    // stays on the device, its norm and loss all-reduced there (tp and dp): no host
    // synchronisation between log lines (device_step.hpp). Elsewhere the host reads the loss
    // and the gradient norm back every step.
    if (device.is_cuda() && topo.layout().pp == 1 && !opt.zero &&
        collectives_on_device(t.ctx_.tp()) && collectives_on_device(t.ctx_.dp())) {
      dstep = std::make_unique<DeviceStep>(device, schedule, std::max<int64_t>(opt.steps, 1),
                                           std::max<int64_t>(opt.log_interval, 1), m, start,
                                           optimizer->steps_taken(), t.ctx_.tp(), t.ctx_.dp());
      optimizer->use_step_scalars(dstep->scalars());
    }
    if (opt.cuda_graphs) {
      TRIDENT_CHECK(dstep != nullptr, "--cuda-graphs: no device-side step on ", device.str());
      graph = std::make_unique<CudaGraphStep>(device);
      graph_inputs = micro_batches(*train_loader, start, topo, m, device);
    }
    norm_weights = grad_norm_weights(model(), t.ctx_);
    tracing = start_trace(t, flops_per_step);
    run_start = Clock::now();
    return true;
  }

  // Forward and backward of the step's micro-batches; gradients reduced over dp and between
  // tied copies. Returns the pipeline's mean loss (pp > 1) and its bubble; with pp == 1 each
  // micro-batch's scaled loss stays on the device in `micro_losses` until the read-back.
  void forward_backward(int64_t step, Tensor& micro_losses, double& loss, double& bubble) {
    const std::vector<MicroBatch> mbs =
        graph ? graph_inputs : micro_batches(*train_loader, step, topo, m, device);
    {
      trace::Span span("zero_grad", trace::Category::Optimizer);
      reducer->zero_grad();  // one fill over every gradient bucket
    }
    // Every micro-batch's forward and backward read the same weights (the optimizer runs after
    // this, ZeRO's all-gather with it): their bf16 copies are cast once, here.
    const WorkingCopies::Scope copies(working_copies);
    if (!pipeline) {
      micro_losses = dstep ? dstep->micro_losses() : Tensor::zeros({m}, DType::F32, device);
      for (int64_t k = 0; k < m; ++k) {
        Tensor l;
        {
          trace::Span span("forward", trace::Category::Compute);
          span.arg("micro", k);
          const trace::DeviceSpan gpu_span("forward", trace::Category::Compute, device);
          // The loss is told the 1/m its backward will receive (the fused classifier writes
          // its gradient for it: no rescale pass over the logits).
          const double scale = 1.0 / static_cast<double>(m);
          l = model().loss(model().forward(mbs[k].inputs), mbs[k].targets, scale);
          if (m > 1) l = l * scale;
        }
        trace::Span span("backward", trace::Category::Compute);
        span.arg("micro", k);
        const trace::DeviceSpan gpu_span("backward", trace::Category::Compute, device);
        reducer->prepare(k == m - 1);
        l.backward();
        NoGradGuard no_grad;
        micro_losses.slice(0, k, k + 1).copy_(l.detach().reshape({1}).to(DType::F32));
      }
    } else {
      const PipelineStepStats st =
          pipeline->run(model(), mbs, t.ctx_.pp(), [&](int, bool last) { reducer->prepare(last); });
      loss = st.loss;
      bubble = st.comm_wait_s;
    }
    reducer->finish();
    reduce_tied_gradients(model(), t.ctx_, reducer.get());
  }

  void optimizer_step(int64_t step) {
    trace::Span span("optimizer step", trace::Category::Optimizer);
    const trace::DeviceSpan gpu_span("optimizer step", trace::Category::Optimizer, device);
    optimizer->set_lr(schedule.lr(step));  // with a device step: what the device reads
    optimizer->step();
  }

  // Host path: the norm (for clipping, and on log lines), the loss, the job-wide non-finite
  // and preemption verdict, then the update. Returns false when the job must stop.
  bool finish_step_on_host(StepMetrics& rec, const Tensor& micro_losses, double loss_sum,
                           StepVerdict& verdict) {
    const int64_t step = rec.step - 1;
    double grad_norm = 0;
    rec.have_norm = opt.grad_clip > 0 || rec.log_line;
    if (rec.have_norm) {
      trace::Span span("grad norm", trace::Category::Optimizer);
      double sq = reducer->grad_sum_squares_local(norm_weights);
      // Without ZeRO every dp replica holds the same reduced gradients: count one of them.
      if (!opt.zero && topo.dp_rank() != 0) sq = 0;
      world().all_reduce(&sq, 1, DType::F64, ReduceOp::Sum);
      grad_norm = std::sqrt(sq);
    }
    // Clipping: the update reads every gradient times the factor (f32, as a scaling pass would
    // store it), no pass over the gradients.
    float clip = 1.0f;
    if (opt.grad_clip > 0) {
      const double coef = opt.grad_clip / (grad_norm + 1e-6);
      if (coef < 1.0) clip = static_cast<float>(coef);
    }
    optimizer->set_grad_scale(clip);
    if (micro_losses.defined()) {
      for (const float l : micro_losses.to_vector<float>()) loss_sum += l;
    }
    t.ctx_.dp().all_reduce(&loss_sum, 1, DType::F64, ReduceOp::Avg);
    if (opt.fault_nan_step == step + 1) loss_sum = std::nan("");
    rec.loss = loss_sum;
    rec.grad_norm = grad_norm;
    // Every rank learns whether any saw a non-finite loss or norm, or a preemption signal.
    verdict = agree_on_step(world(), !std::isfinite(loss_sum) || !std::isfinite(grad_norm));
    if (verdict.non_finite) {
      rec.skipped = true;
      const bool stop = opt.nan_policy == "stop";
      each_callback([&](TrainerCallback& cb) { cb.on_nonfinite(t, rec, stop); });
      if (stop) return false;
    } else {
      optimizer_step(step);
    }
    return true;
  }

  // Device path (GPUs): the step's bookkeeping is queued on the device (run_step); the
  // numbers are read back on log lines and before evaluations, checkpoints or a stop. The host
  // waits for the device once, here; its wait counts as the last pending step's time. Returns
  // false when the job must stop (a non-finite step under the stop policy). `measure_comm`: the
  // last pending step ran the reducer's host code (not a graph replay), whose exposed
  // communication time (the device's stall at the buckets, from events) is read now that the
  // host waited anyway; the other steps report 0 (measuring them would make the host wait).
  bool read_back(bool measure_comm) {
    const auto t_read = Clock::now();
    const std::vector<DeviceStep::Numbers> nums =
        dstep->read(pending.front().step - 1, static_cast<int64_t>(pending.size()));
    if (measure_comm) pending.back().exposed_comm_s = reducer->exposed_comm_seconds();
    pending.back().step_s += seconds_since(t_read);
    int64_t skipped = 0;
    for (size_t i = 0; i < pending.size(); ++i) {
      StepMetrics& r = pending[i];
      r.loss = nums[i].loss;
      r.grad_norm = nums[i].grad_norm;
      r.skipped = nums[i].nonfinite;
      if (r.skipped) {
        const bool stop = opt.nan_policy == "stop";
        // Under stop the device skipped every update from this step on.
        each_callback([&](TrainerCallback& cb) { cb.on_nonfinite(t, r, stop); });
        if (stop) return false;
        ++skipped;
      }
      report(r);
    }
    optimizer->set_steps_taken(optimizer->steps_taken() - skipped);
    pending.clear();
    return true;
  }

  void report(const StepMetrics& r) {
    last_loss = r.loss;
    each_callback([&](TrainerCallback& cb) { cb.on_step_end(t, r); });
  }

  // A preemption signal is turned into a checkpoint only where there is a directory for it.
  bool preemption_handled() const { return opt.handle_preemption && !opt.checkpoint_dir.empty(); }

  bool eval_due(int64_t step) const {
    return opt.eval_interval > 0 && (step + 1) % opt.eval_interval == 0 && step + 1 < opt.steps;
  }
  bool checkpoint_due(int64_t step) const {
    return opt.checkpoints &&
           ((opt.checkpoint_every > 0 && (step + 1) % opt.checkpoint_every == 0) ||
            step + 1 == opt.steps);
  }

  // One optimizer step. Returns false when the job must stop (non-finite under stop).
  bool run_step(int64_t step, StepVerdict& verdict) {
    const auto t0 = Clock::now();
    const long long syncs0 = cuda_emulated_host_syncs(), mallocs0 = cuda_emulated_mallocs();
    std::optional<trace::Span> step_span;  // ends before validation
    step_span.emplace("step", trace::Category::Step);
    step_span->arg("step", step + 1);
    Tensor micro_losses;
    double loss = 0, bubble = 0;
    bool host_ran = true;  // the step's host code ran (not a graph replay)
    if (graph) {
      // The step's batch into the captured input buffers (device to device, before the
      // launch), then the whole device step: eager, captured, or a replay of the graph.
      const std::vector<MicroBatch> mbs = micro_batches(*train_loader, step, topo, m, device);
      for (int64_t k = 0; k < m; ++k) {
        graph_inputs[k].inputs.copy_(mbs[k].inputs);
        graph_inputs[k].targets.copy_(mbs[k].targets);
      }
      host_ran = graph->run([&] {
        forward_backward(step, micro_losses, loss, bubble);
        dstep->finish(*reducer, norm_weights, opt.grad_clip, opt.nan_policy == "stop",
                      opt.fault_nan_step);
        optimizer_step(step);
      });
      if (!host_ran) {  // a replay: the host's copies of the learning rate and step count
        optimizer->set_lr(schedule.lr(step));
        optimizer->set_steps_taken(optimizer->steps_taken() + 1);
      }
    } else {
      forward_backward(step, micro_losses, loss, bubble);
    }
    StepMetrics rec;
    rec.step = step + 1;
    rec.log_line = (step + 1) % opt.log_interval == 0 || step + 1 == opt.steps || step == 0;
    rec.bubble_s = bubble;
    rec.tokens_per_step = t.tokens_per_step();
    rec.flops_per_step = flops_per_step;
    rec.peak_flops = opt.peak_flops_per_rank * world().size();
    // What both paths record once the optimizer has run.
    const auto finish_record = [&] {
      rec.lr = optimizer->lr();
      // With the device step, at the read-back (reading it here waits for the device).
      if (!dstep) rec.exposed_comm_s = reducer->exposed_comm_seconds();
      rec.peak_mem_bytes = allocator_for(device).stats().peak_bytes;
      rec.step_s = seconds_since(t0);
      if (syncs0 >= 0) {
        rec.host_syncs = cuda_emulated_host_syncs() - syncs0;
        rec.device_mallocs = cuda_emulated_mallocs() - mallocs0;
      }
    };
    bool ok = true;
    if (dstep) {
      // The record is complete before it waits in `pending`.
      const bool must_read = eval_due(step) || checkpoint_due(step);
      if (!graph) {
        dstep->finish(*reducer, norm_weights, opt.grad_clip, opt.nan_policy == "stop",
                      opt.fault_nan_step);
      }
      verdict = agree_on_step(world(), false);  // the preemption signal; the device checks NaNs
      if (!graph) optimizer_step(step);
      rec.have_norm = true;
      finish_record();
      pending.push_back(rec);
      if (rec.log_line || must_read || verdict.stop_signal != 0) ok = read_back(host_ran);
    } else {
      ok = finish_step_on_host(rec, micro_losses, loss, verdict);
      finish_record();
      if (ok) report(rec);
    }
    if (!ok) return false;
    if (trace::enabled()) {
      const int64_t log_begin = trace::now_ns();
      trace::flush_device_spans();  // GPU spans of this step onto the "cuda:N" track
      trace::record("log", trace::Category::Other, log_begin, trace::now_ns());
      trace::counter("loss", last_loss);
      trace::counter("peak_mem_bytes",
                     static_cast<double>(allocator_for(device).stats().peak_bytes));
    }
    return true;
  }

  void validate(int64_t step) {
    trace::Span span("evaluate", trace::Category::Other);
    const double val = t.evaluate(*val_loader, val_batches);
    each_callback([&](TrainerCallback& cb) { cb.on_validation(t, step, val); });
  }

  // Returns the path, or "" after a failure (reported once, on every rank).
  std::string checkpoint(int64_t step) {
    trace::Span span("checkpoint", trace::Category::Checkpoint);
    double secs = 0;
    int64_t bytes = 0;
    const std::string path =
        save_checkpoint(run_info, model(), *optimizer, world(), step, &secs, &bytes);
    if (path.empty()) return path;
    std::vector<int64_t> rank_bytes(static_cast<size_t>(world().size()));
    world().all_gather(&bytes, rank_bytes.data(), 1, DType::I64);
    if (bytes < 0) rank_bytes.clear();  // the rank-0 writer
    each_callback([&](TrainerCallback& cb) { cb.on_checkpoint(t, step, path, secs, rank_bytes); });
    return path;
  }

  TrainResult finish(TrainResult r, const TrainData& data) {
    if (preemption_handled()) restore_default_signal_handlers();
    std::optional<trace::Span> eval_span;
    eval_span.emplace("evaluate", trace::Category::Other);
    r.val_loss = t.evaluate(*val_loader, val_batches);
    eval_span.reset();
    each_callback([&](TrainerCallback& cb) { cb.on_validation(t, opt.steps, r.val_loss); });
    if (!opt.weights_path.empty()) {
      save_full_weights(model(), t.ctx_, world(), opt.weights_path);
      if (world().rank() == 0) r.weights_path = opt.weights_path;
    }
    if (tracing) {
      const std::string path = trace::trace_path_for_rank(opt.trace, topo.world_rank());
      tracing->write(path);
      r.trace_path = path;
    }
    r.final_train_loss = last_loss;
    r.loss_floor = data.loss_floor;
    if (graph) {
      r.graph_captures = graph->captures();
      r.graph_launches = graph->launches();
    }
    r.seconds = seconds_since(run_start);
    return r;
  }
};

Trainer::Trainer(TrainableModel& model, const ParallelContext& ctx, Communicator& world,
                 TrainerOptions options)
    : model_(model), ctx_(ctx), world_(world), opt_(std::move(options)) {
  TRIDENT_CHECK(opt_.batch > 0 && opt_.seq > 0, "batch and seq must be positive");
  TRIDENT_CHECK(opt_.micro_batches > 0, "--micro-batches must be positive");
  TRIDENT_CHECK(opt_.steps >= 0, "--steps must not be negative");
  TRIDENT_CHECK(opt_.log_interval > 0, "--log-interval must be positive");
  TRIDENT_CHECK(!opt_.zero || opt_.optimizer == "adamw",
                "--zero 1 shards AdamW state: use --optimizer adamw");
  TRIDENT_CHECK(opt_.optimizer == "adamw" || opt_.optimizer == "sgd", "optimizer '", opt_.optimizer,
                "': choose adamw or sgd");
  TRIDENT_CHECK(opt_.bucket_mb > 0, "--bucket-mb must be positive");
  TRIDENT_CHECK(opt_.nan_policy == "stop" || opt_.nan_policy == "skip",
                "--nan-policy must be stop or skip, got '", opt_.nan_policy, "'");
  TRIDENT_CHECK(
      opt_.checkpoint_every >= 0 && opt_.keep_checkpoints >= 0 && opt_.fault_nan_step >= 0,
      "--checkpoint-every, --keep-checkpoints and --fault-nan-step must not be negative");
  TRIDENT_CHECK(!opt_.checkpoints || !opt_.checkpoint_dir.empty(),
                "checkpoints need a checkpoint directory");
  if (opt_.cuda_graphs) {
    check_cuda_graphs_supported(
        model_.device(), ctx_.layout(), world_.size(),
        collectives_on_device(ctx_.tp()) && collectives_on_device(ctx_.dp()), opt_.zero,
        !opt_.trace.empty());
  }
}

Trainer::~Trainer() = default;

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) {
  callbacks_.push_back(std::move(callback));
}

int64_t Trainer::sequences_per_step() const {
  return static_cast<int64_t>(ctx_.layout().dp) * opt_.micro_batches * opt_.batch;
}

double Trainer::tokens_per_step() const {
  return static_cast<double>(sequences_per_step() * opt_.seq);
}

double Trainer::evaluate(const data::TokenLoader& loader, int64_t batches) {
  NoGradGuard no_grad;
  nn::Module& module = model_.module();
  const bool was_training = module.is_training();
  module.eval();
  double total = 0;
  for (int64_t k = 0; k < batches; ++k) {
    const auto mbs = micro_batches(loader, k, ctx_.topology(), opt_.micro_batches, model_.device());
    total += run_pipeline_forward(model_, mbs, ctx_.pp()).loss;
  }
  ctx_.dp().all_reduce(&total, 1, DType::F64, ReduceOp::Avg);
  module.train(was_training);
  return total / static_cast<double>(batches);
}

TrainResult Trainer::fit(TrainData data) {
  data_description_ = data.description;
  Loop loop(*this);
  TrainResult result;
  if (!loop.prepare(data)) {
    result.exit_code = 1;
    return result;
  }
  for (auto& cb : callbacks_) cb->on_train_begin(*this, start_step_);
  for (int64_t step = start_step_; step < opt_.steps; ++step) {
    StepVerdict verdict;
    if (!loop.run_step(step, verdict)) {
      result.exit_code = 1;
      return result;
    }
    result.steps_done = step + 1;
    if (loop.eval_due(step)) loop.validate(step + 1);
    if (loop.checkpoint_due(step) || verdict.stop_signal != 0) {
      const std::string path = loop.checkpoint(step + 1);
      if (path.empty()) {
        result.exit_code = 1;
        return result;
      }
      if (verdict.stop_signal != 0) {
        for (auto& cb : callbacks_) cb->on_preempted(*this, step + 1, verdict.stop_signal, path);
        result.preempted = true;
        result.final_train_loss = loop.last_loss;
        return result;
      }
    }
  }
  result = loop.finish(result, data);
  for (auto& cb : callbacks_) cb->on_train_end(*this, result);
  return result;
}

}  // namespace trident::train
