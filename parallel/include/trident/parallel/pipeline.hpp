// Pipeline parallelism: one training step (forward and backward of m micro-batches) run across
// the p stages of a model split by layers, with activations and their gradients moved by
// point-to-point send/recv over the pipeline communicator (its rank is the stage index).
//
// Schedules (F_i / B_i: forward / backward of micro-batch i on this stage):
//   gpipe  F_0 .. F_{m-1}, then B_0 .. B_{m-1}: every stage holds m micro-batches' activations.
//   1f1b   stage s runs w = min(p - s - 1, m) warmup forwards, then alternates one forward and
//          one backward (F_{w+i}, B_i) until all forwards are done, then the w cooldown
//          backwards: at most w + 1 <= p micro-batches' activations are alive at once.
// Both have the same bubble, (p - 1) / (m + p - 1) of the step with equal stages; 1F1B only
// bounds the memory. Backwards run in micro-batch order on every stage in both schedules.
//
// Messages: the stage output of micro-batch i, (b, T, C) f32 contiguous, goes to stage s + 1
// with tag kPipelineActivationTag; the gradient of the loss with respect to it comes back with
// kPipelineGradientTag. MPI keeps messages of one (source, tag) in order, so micro-batch i
// matches the i-th message. Sends are asynchronous (waited on before the step ends, their
// buffers kept alive until then), so no send can block its stage; the receive of the next
// activation (and gradient) is posted one micro-batch ahead, so transfers overlap compute.
//
// Host synchronisation: none per micro-batch. The last stage keeps each micro-batch's loss on
// the device; at the end of run() each stage waits once for its queued work, then the loss is
// read back and shared.
//
// Gradients: each micro-batch's loss is scaled by 1/m before its backward, so parameter
// gradients accumulate to those of the mean loss over the global batch (m b sequences of T);
// the stage's loss() is told so (grad_scale 1/m).
// On a non-first stage the received activation is a fresh leaf requiring grad; after the
// stage's backward its .grad() is sent to the previous stage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/tensor.hpp"
#include "trident/parallel/communicator.hpp"

namespace trident {

constexpr int kPipelineActivationTag = 0x5001;
constexpr int kPipelineGradientTag = 0x5002;

// One stage of a model, as the schedules see it. The model's adapter lives with the model
// (models/gpt_stage.hpp): parallel/ does not know the models built on it.
class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  // First stage: a micro-batch's inputs (token ids); others: the received activation.
  // Returns the stage output (the hidden states sent on, or given to loss() on the last stage).
  virtual Tensor forward(const Tensor& input) = 0;
  // Last stage only: the scalar loss of one micro-batch (the mean over its tokens), unscaled.
  // grad_scale is the gradient its backward will receive (the schedules scale a micro-batch's
  // loss by 1/m): a loss that writes its gradient during the forward (the fused classifier)
  // writes it for that upstream gradient, so that its backward need not rescale it. A loss may
  // ignore it and stays correct: its backward then scales by whatever gradient arrives.
  virtual Tensor loss(const Tensor& output, const Tensor& targets, double grad_scale) = 0;
  virtual bool is_first() const = 0;
  virtual bool is_last() const = 0;
  // The activation exchanged between stages for a micro-batch of `batch` sequences of
  // `seq_len` tokens, e.g. (b, T, C). Its dtype is f32.
  virtual Shape activation_shape(int64_t batch, int64_t seq_len) const = 0;
  // Where received activations and gradients are allocated.
  virtual Device device() const { return Device::cpu(); }
  // (Parameters several stages hold, such as a tied token embedding, are declared by the
  // model to the trainer: trident/train/trainable_model.hpp. The schedules leave them alone.)
};

struct MicroBatch {
  Tensor inputs;   // (b, T) on the first stage; may be undefined elsewhere
  Tensor targets;  // (b, T) on the last stage; may be undefined elsewhere
};

struct PipelineStepStats {
  // Mean over micro-batches of their (unscaled) loss; the same on every stage (an all-reduce
  // over pp at the end of the step, which also lines the stages up: see comm_wait_s).
  double loss = 0;
  int num_micro_batches = 0;
  double step_s = 0;      // wall time of run() on this stage
  double forward_s = 0;   // in stage forward (and loss on the last stage)
  double backward_s = 0;  // in backward passes, before_backward included
  // Time blocked waiting for neighbours: receives of activations and gradients, completion of
  // sends, and the closing loss all-reduce (so a stage that finishes early waits there for the
  // drain of the pipeline). Pipeline bubble + transfer time. For device transfers (NCCL), whose
  // wait() does not block the host, the time the compute stream stood waiting for each of them
  // (events), read once the stage's work drained at the end of run().
  double comm_wait_s = 0;
  // Peak bytes of the device allocator during the step above those in use when it began:
  // saved activations, received buffers and gradients created during the step.
  size_t peak_activation_bytes = 0;
  // Most micro-batches whose activations were alive at once (forward done, backward not).
  int max_in_flight = 0;
};

// Called before every micro-batch backward on every stage; `last` is true for the stage's
// last backward of the step (a data-parallel reducer reduces only then).
using BeforeBackwardFn = std::function<void(int micro, bool last)>;

class PipelineSchedule {
 public:
  virtual ~PipelineSchedule() = default;
  virtual const char* name() const = 0;
  // One training step over `micro_batches` (the same count m >= 1 on every stage, every
  // micro-batch of the same (b, T)). Collective over `pp`, whose rank must be the stage's
  // index (pp.size() stages). Gradients accumulate into the parameters' .grad() (zero them
  // before the step); tied copies are combined after it (train::reduce_tied_gradients). Throws
  // trident::Error on a mismatch between stages (count or shape of micro-batches) on every stage.
  virtual PipelineStepStats run(PipelineStage& stage, const std::vector<MicroBatch>& micro_batches,
                                Communicator& pp, const BeforeBackwardFn& before_backward = {}) = 0;
};

class PipelineScheduleGPipe final : public PipelineSchedule {
 public:
  const char* name() const override { return "gpipe"; }
  PipelineStepStats run(PipelineStage& stage, const std::vector<MicroBatch>& micro_batches,
                        Communicator& pp, const BeforeBackwardFn& before_backward = {}) override;
};

class PipelineSchedule1F1B final : public PipelineSchedule {
 public:
  const char* name() const override { return "1f1b"; }
  PipelineStepStats run(PipelineStage& stage, const std::vector<MicroBatch>& micro_batches,
                        Communicator& pp, const BeforeBackwardFn& before_backward = {}) override;
};

// Forward only (evaluation): F_0 .. F_{m-1} on every stage with the same messages as the
// training schedules (activations only, no backward, no gradients; run under NoGradGuard),
// each micro-batch's activations freed once sent. Returns the stats with `loss` the mean of
// the micro-batches' losses on every stage. Collective over `pp` as run().
PipelineStepStats run_pipeline_forward(PipelineStage& stage,
                                       const std::vector<MicroBatch>& micro_batches,
                                       Communicator& pp);

// "gpipe" or "1f1b"; throws trident::Error naming the choices otherwise.
std::unique_ptr<PipelineSchedule> make_pipeline_schedule(const std::string& name);
std::vector<std::string> pipeline_schedule_names();

// The number of warmup forwards stage `stage` of `stages` runs under 1F1B with m micro-batches.
int one_f_one_b_warmup(int stage, int stages, int micro_batches);

}  // namespace trident
