// A training step whose bookkeeping stays on the GPU (CUDA, no pipeline, no ZeRO; over several
// ranks with NCCL collectives): the micro-batch losses, the gradient norm, the clip factor, the
// learning rate, the AdamW step count and the non-finite check are computed by kernels from
// device memory (Backend::train_step_finish), so a step queues all its work without the host
// ever waiting for the device, and the same launches are right at every step (a CUDA graph
// replays them). Over ranks, the two reductions the host path makes with MPI are NCCL
// all-reduces of one double on the compute stream, between the kernels:
//   norm  the squared norm over the tensor-parallel group (the ranks holding distinct shards;
//         every data-parallel replica holds the same reduced gradients, so each computes the
//         norm itself instead of one replica's partial being summed over the world);
//   loss  each rank's micro-batch loss sum over the data-parallel group, divided by its size
//         (MPI's average; tensor-parallel ranks hold the same loss).
// Every rank thus reaches the same norm, loss and skip decision without a host round trip.
// The host reads the step numbers back once per log line (read()), where it learns about
// non-finite steps: under --nan-policy stop the device has skipped every update from the bad
// step on, so stopping there leaves the weights as the host-side check would have.
#pragma once
#include <cstdint>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/core/tensor.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/parallel/data_parallel.hpp"

namespace trident::train {

// True when a collective of `c` on device memory is queued on the compute stream without the
// host waiting (an NCCL communicator), or when none is needed (one rank).
bool collectives_on_device(const Communicator& c);

class DeviceStep {
 public:
  // The schedule's learning rates for steps [0, steps) are uploaded once; `window` >= the
  // most steps between two read()s; the block starts at `start_step` with `optimizer_steps`
  // updates already applied (a resume). `norm_group` and `loss_group` (see above; tp and dp)
  // must satisfy collectives_on_device; of one rank they take part in nothing.
  DeviceStep(Device device, const optim::CosineSchedule& schedule, int64_t steps, int64_t window,
             int64_t micro_batches, int64_t start_step, int64_t optimizer_steps,
             Communicator& norm_group, Communicator& loss_group);
  // The device block the optimizer reads (Optimizer::use_step_scalars).
  const void* scalars() const { return scalars_.raw_data(); }
  // (micro_batches) f32: micro-batch k's scaled loss goes to element k.
  Tensor& micro_losses() { return micro_losses_; }
  // Queues the step's bookkeeping after the gradients are final: the norm of the gradients
  // (weights of 0 and 1 as global_grad_norm's; all-reduced over norm_group) and the clip
  // factor when grad_clip > 0, which the optimizer's update reads from the block (no pass over
  // the gradients); the loss all-reduced over loss_group.
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
  Tensor scalars_, micro_losses_, sum_squares_, loss_sum_, lr_table_, window_numbers_;
  int64_t window_;
  Communicator &norm_group_, &loss_group_;
};

}  // namespace trident::train
