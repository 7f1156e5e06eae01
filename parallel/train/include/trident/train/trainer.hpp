// Trainer: the training loop as a library. It trains any TrainableModel
// (trident/train/trainable_model.hpp) under any dp x tp x pp layout, on the CPU or a GPU:
//
//   step s: every data-parallel rank takes its micro-batches of the global batch (rank d's k-th
//           is piece d * m + k, so every layout consumes the same tokens), runs them through its
//           stage (a pipeline schedule when pp > 1), the DataParallelReducer averages gradients
//           over dp while backward runs (buckets, overlap, ZeRO-1), the copies of tied
//           parameters are summed between the stages holding them (reduce_tied_gradients),
//           gradients are clipped by their global norm over every shard, a non-finite loss or
//           norm stops the job or skips the update (nan_policy), the optimizer steps;
//   every eval_interval steps and at the end: validation, a forward-only pipeline schedule
//           over the held-out tokens; checkpoints every checkpoint_every steps, at the end and
//           on SIGUSR1/SIGTERM (preemption: checkpoint, then return), resume from the newest.
//
// Callbacks (TrainerCallback) see every step's numbers, validations and checkpoints: the
// console log and metrics.jsonl of trident-train are two of them (ConsoleLog, MetricsJsonl).
//
// Host synchronisation: on GPUs (no pipeline, no ZeRO; over several ranks, NCCL collectives)
// none inside a step: the loss, the gradient norm (both all-reduced on the device), clipping,
// the non-finite check and the optimizer's lr and step count stay in device memory and are
// read back once per log line (and before an evaluation or a checkpoint). Other layouts read
// the device back once a step.
//
// Minimal use (every rank of an MPI job; see README "Training a model"):
//
//   auto world = MpiCommunicator::world();
//   const Topology topo(world->rank(), world->size(), resolve_layout(world->size(), 0, 2, 2));
//   auto groups = make_comm_groups(*world, topo, Device::cpu(), "auto");
//   ParallelContext ctx(*groups);
//   MyModel model(ctx);                               // a TrainableModel
//   TrainerOptions opt;  opt.steps = 100;  opt.checkpoint_dir = "ckpt";
//   Trainer trainer(model, ctx, *world, opt);
//   trainer.add_callback(std::make_shared<ConsoleLog>());
//   TrainResult r = trainer.fit(TrainData{train_tokens, val_tokens, "my data"});
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trident/io/data.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/parallel/data_parallel.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::train {

struct TrainerOptions {
  // batch: the global batch of a step is dp x micro_batches x batch sequences of seq tokens
  int64_t batch = 16;  // sequences per micro-batch on each data-parallel rank
  int64_t seq = 64;
  int64_t micro_batches = 1;
  int64_t steps = 600;
  // parallelism
  std::string schedule = "1f1b";  // pipeline schedule: gpipe or 1f1b
  bool overlap = true;            // reduce gradient buckets during backward
  double bucket_mb = 25.0;
  bool zero = false;  // ZeRO-1: AdamW state sharded over data-parallel ranks
  // optimizer: AdamW (matrices decayed, vectors not) or SGD; warmup + cosine learning rate
  std::string optimizer = "adamw";
  float lr = 3e-3f, min_lr = 3e-4f;
  int64_t warmup = 30;
  float weight_decay = 0.1f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float momentum = 0.9f;
  bool nesterov = false;
  float grad_clip = 1.0f;           // global gradient-norm clip; 0 = off
  std::string nan_policy = "stop";  // stop | skip: a non-finite loss or gradient norm
  int64_t fault_nan_step = 0;       // testing: report a NaN loss at this step (1-based)
  // validation
  int64_t eval_interval = 0;  // steps between validations; 0 = only at the end
  int64_t eval_batches = 0;   // global batches per validation; 0 = about 20 x 1024 tokens
  // checkpoints (HDF5, see checkpointing in the README)
  std::string checkpoint_dir;    // where step_<N>.h5 go (preemption writes here too)
  bool checkpoints = false;      // write at the end and every checkpoint_every steps
  int64_t checkpoint_every = 0;  // steps between checkpoints (0: at the end and on preemption)
  int keep_checkpoints = 3;      // newest kept (0: all)
  bool resume = false;           // continue from the newest checkpoint of checkpoint_dir
  std::string resume_from;       // or from this file
  // SIGUSR1/SIGTERM: checkpoint at the end of the step and return (needs checkpoint_dir).
  bool handle_preemption = true;
  // logging and outputs
  int64_t log_interval = 25;  // steps between log lines (StepMetrics::log_line)
  std::string trace;          // Chrome trace JSON: FILE for rank 0, FILE.rank<N>.json
  std::string weights_path;   // full weights (safetensors) written at the end; "" = none
  uint64_t seed = 1337;       // recorded in checkpoints
  // The job's dense peak FLOP/s per rank, for MFU; 0 = unknown (the CPU): no MFU.
  double peak_flops_per_rank = 0;
  // Error lines start "<program>: error: ".
  std::string program = "trident";
  // The first two steps run eagerly, the third is captured into a CUDA graph that every later
  // step replays (cuda_graph_step.hpp); with data/tensor parallelism over NCCL too (its
  // collectives are graph nodes). Refused with pipeline parallelism, ZeRO, a trace, MPI
  // collectives over several ranks, the CPU device.
  bool cuda_graphs = false;
};

// The token data: sources opened, not loaded (each rank reads its own windows).
struct TrainData {
  data::TokenStream train, val;
  std::string description;
  double loss_floor = -1;  // the best possible loss where known (logged at the end), else < 0
};

// One step's numbers, as the log line and metrics.jsonl report them. With the device step
// (one GPU) they reach the callbacks at the next read-back, in step order.
struct StepMetrics {
  int64_t step = 0;       // 1-based: optimizer steps done after it
  bool log_line = false;  // a log-interval step (or the first or last)
  bool have_norm = false, skipped = false;
  double loss = 0, grad_norm = 0;
  float lr = 0;
  double step_s = 0, exposed_comm_s = 0, bubble_s = 0;
  double tokens_per_step = 0;
  double flops_per_step = 0;  // model FLOPs of the whole job's step (0: unknown)
  double peak_flops = 0;      // the job's dense peak FLOP/s (0: unknown, e.g. the CPU)
  size_t peak_mem_bytes = 0;
  long long host_syncs = -1, device_mallocs = -1;  // where the CUDA emulation counts them
};

// Throws trident::Error naming the cause where --cuda-graphs cannot capture a step: not a CUDA
// device, --pp > 1, more than one rank without NCCL collectives (`nccl`: the job's dp and tp
// communicators are NCCL's), ZeRO, a trace. Trainer's constructor checks it; a launcher can
// call it first, to report the error once.
void check_cuda_graphs_supported(Device device, const ParallelLayout& layout, int world_size,
                                 bool nccl, bool zero, bool trace);

struct TrainResult {
  int exit_code = 0;  // 0: trained (or preempted after its checkpoint); 1: stopped on an error
  bool preempted = false;
  int64_t steps_done = 0;
  double final_train_loss = 0;
  double val_loss = 0;
  double seconds = 0;        // the whole fit()
  double loss_floor = -1;    // TrainData's
  std::string trace_path;    // rank 0's trace file, where one was written
  std::string weights_path;  // where the full weights were written (rank 0), or ""
  // cuda_graphs: graphs captured, and graph launches (the capture's own launch included)
  int64_t graph_captures = 0, graph_launches = 0;
};

class Trainer;

// Hooks into the loop. Called on every rank; a callback that prints usually does so on world
// rank 0 only (Trainer::is_logging_rank()).
class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_train_begin(const Trainer& trainer, int64_t start_step) {
    (void)trainer, (void)start_step;
  }
  virtual void on_step_end(const Trainer& trainer, const StepMetrics& m) { (void)trainer, (void)m; }
  virtual void on_validation(const Trainer& trainer, int64_t step, double val_loss) {
    (void)trainer, (void)step, (void)val_loss;
  }
  // `rank_bytes`: the tensor bytes each rank wrote (empty with the rank-0 writer).
  virtual void on_checkpoint(const Trainer& trainer, int64_t step, const std::string& path,
                             double seconds, const std::vector<int64_t>& rank_bytes) {
    (void)trainer, (void)step, (void)path, (void)seconds, (void)rank_bytes;
  }
  // A step whose loss or gradient norm is not finite: stopped (stop policy) or skipped.
  virtual void on_nonfinite(const Trainer& trainer, const StepMetrics& m, bool stopping) {
    (void)trainer, (void)m, (void)stopping;
  }
  virtual void on_preempted(const Trainer& trainer, int64_t step, int signal,
                            const std::string& checkpoint) {
    (void)trainer, (void)step, (void)signal, (void)checkpoint;
  }
  // After the final validation (and the trace and weights are written).
  virtual void on_train_end(const Trainer& trainer, const TrainResult& result) {
    (void)trainer, (void)result;
  }
};

class Trainer {
 public:
  // `model`, `ctx` and `world` (the job's world communicator, for host scalars: MPI) must
  // outlive the trainer. Throws trident::Error on inconsistent options (naming them).
  Trainer(TrainableModel& model, const ParallelContext& ctx, Communicator& world,
          TrainerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  void add_callback(std::shared_ptr<TrainerCallback> callback);

  // Trains for options().steps steps (from a checkpoint's step when resuming). Collective over
  // the job. Errors a rank finds alone (a full disk, a corrupt checkpoint) are reported once
  // and give exit_code 1 on every rank.
  TrainResult fit(TrainData data);
  // Mean loss over the first `batches` global batches of `loader`'s tokens, each split into
  // micro-batches as in training (any layout evaluates the same sequences), through the
  // forward-only pipeline schedule. Collective over the job.
  double evaluate(const data::TokenLoader& loader, int64_t batches);

  const TrainerOptions& options() const { return opt_; }
  TrainableModel& model() const { return model_; }
  const ParallelContext& context() const { return ctx_; }
  Communicator& world() const { return world_; }
  bool is_logging_rank() const { return world_.rank() == 0; }
  // The data description given to fit(), and the start step (after a resume).
  const std::string& data_description() const { return data_description_; }
  int64_t start_step() const { return start_step_; }
  double tokens_per_step() const;
  // The sequences of one global batch: dp x micro_batches x batch.
  int64_t sequences_per_step() const;

 private:
  struct Loop;  // the state of one fit() (trainer.cpp)
  TrainableModel& model_;
  const ParallelContext& ctx_;
  Communicator& world_;
  TrainerOptions opt_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  std::string data_description_;
  int64_t start_step_ = 0;
};

// Sums the gradients of the copies of every tied parameter (TrainableModel::tied_parameters)
// over the stages holding them, so each copy holds the single-model gradient. With a
// DataParallelReducer (whose solo_params hold the tied names: local_tied_parameter_names) its
// all_reduce_param_grad does it, after reducer.finish() (under ZeRO this rank owns a shard
// only); without one (reducer null) the .grad() tensors are summed (a copy with no gradient
// takes part with zeros). Collective over ParallelContext::embedding_group(); nothing when
// pp == 1 or on a stage holding no copy. Throws trident::Error for copies on a stage set
// other than {first, last}.
void reduce_tied_gradients(const TrainableModel& model, const ParallelContext& ctx,
                           DataParallelReducer* reducer);
// The names of this rank's tied copies (for DataParallelOptions::solo_params).
std::vector<std::string> local_tied_parameter_names(const TrainableModel& model,
                                                    const ParallelContext& ctx);

}  // namespace trident::train
