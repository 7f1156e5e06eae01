// The per-step numbers of a training step kept in device memory, so that a step queues its
// work without waiting for the device and can be captured as a CUDA graph (which replays the
// same kernel arguments: anything that changes from step to step must be read from memory).
// One StepScalars block per job; train_step_finish() runs once per step, after the gradients
// are final and before the optimizer, in one thread:
//   loss  = sum_k micro_losses[k] (in double, in order k = 0, 1, ..), NaN when step == fault_step;
//           over several ranks *loss_sum / loss_ranks, where loss_sum is the all-reduced sum of
//           every rank's train_step_loss_sum (the host's average over data-parallel ranks)
//   norm  = sqrt(*sum_squares)
//   clip  = grad_clip / (norm + 1e-6) as float when grad_clip > 0 and that is < 1, else 1
//   skip  = loss or norm not finite, or an earlier step was (stop policy)
//   lr    = lr_table[step] (the host's schedule, uploaded once), adam_step += 1 unless skip
// and records loss, norm and the non-finite flag in slot step % window of the host-read window.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

struct StepScalars {
  int64_t step = 0;       // training steps finished (the next one's 0-based index)
  int64_t adam_step = 0;  // optimizer updates applied (AdamW's bias-correction count)
  float lr = 0;           // learning rate of the current step's update
  float clip = 1;         // factor the update multiplies the gradients by (clipping)
  int32_t skip = 0;       // the current step's update is skipped
  int32_t stopped = 0;    // a non-finite step happened and the policy is stop: skip the rest
};

// The window the host reads once per log line; slot i holds step (i mod window)'s numbers.
struct StepWindow {
  double* loss;       // (window)
  double* grad_norm;  // (window)
  double* nonfinite;  // (window) 1 when the step's loss or norm was not finite, else 0
  int64_t window;
};

// `s` (device) = `init` (host), queued on the stream (pageable source: staged at once).
void step_scalars_init(StepScalars* s, const StepScalars& init, cudaStream_t stream);
// *loss_sum (a device double) = sum_k micro_losses[k], as train_step_finish sums them.
void train_step_loss_sum(const float* micro_losses, int64_t m, double* loss_sum,
                         cudaStream_t stream);
// The bookkeeping above; micro_losses (m, f32), loss_sum and sum_squares (one double each) are
// device memory. loss_sum == nullptr (one rank): the loss is the sum of micro_losses.
void train_step_finish(StepScalars* s, const float* micro_losses, int64_t m, const double* loss_sum,
                       int64_t loss_ranks, const double* sum_squares, float grad_clip,
                       bool stop_on_nonfinite, int64_t fault_step, const float* lr_table,
                       int64_t lr_steps, StepWindow window, cudaStream_t stream);

}  // namespace trident::kernels::cuda
