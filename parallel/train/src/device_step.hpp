// A training step whose bookkeeping stays on the GPU (CUDA, one rank, no pipeline, no ZeRO):
// the micro-batch losses, the gradient norm, the clip factor, the learning rate, the AdamW step
// count and the non-finite check are computed by kernels from device memory
// (Backend::train_step_finish), so a step queues all its work without the host ever waiting for
// the device, and the same launches are right at every step (a CUDA graph could replay them).
// The host reads the step numbers back once per log line (read()), where it learns about
// non-finite steps: under --nan-policy stop the device has skipped every update from the bad
// step on, so stopping there leaves the weights as the host-side check would have.
#pragma once
#include <cstdint>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/core/tensor.hpp"
#include "trident/parallel/data_parallel.hpp"

namespace trident::train {

class DeviceStep {
 public:
  // The schedule's learning rates for steps [0, steps) are uploaded once; `window` >= the
  // most steps between two read()s; the block starts at `start_step` with `optimizer_steps`
  // updates already applied (a resume).
  DeviceStep(Device device, const optim::CosineSchedule& schedule, int64_t steps, int64_t window,
             int64_t micro_batches, int64_t start_step, int64_t optimizer_steps);
  // The device block the optimizer reads (Optimizer::use_step_scalars).
  const void* scalars() const { return scalars_.raw_data(); }
  // (micro_batches) f32: micro-batch k's scaled loss goes to element k.
  Tensor& micro_losses() { return micro_losses_; }
  // Queues the step's bookkeeping after the gradients are final: the norm of the gradients
  // (weights of 0 and 1 as global_grad_norm's) and the clip factor when grad_clip > 0, which
  // the optimizer's update reads from the block (no pass over the gradients).
  void finish(DataParallelReducer& reducer, const std::vector<double>& norm_weights,
              float grad_clip, bool stop_on_nonfinite, int64_t fault_step);
  struct Numbers {
    double loss = 0, grad_norm = 0;
    bool nonfinite = false;
  };
  // Steps [first, first + count): waits for the device (the one host synchronisation).
  std::vector<Numbers> read(int64_t first, int64_t count) const;

 private:
  // window_numbers_: (3, window) f64, rows loss, gradient norm, non-finite flag (one read-back)
  Tensor scalars_, micro_losses_, sum_squares_, lr_table_, window_numbers_;
  int64_t window_;
};

}  // namespace trident::train
