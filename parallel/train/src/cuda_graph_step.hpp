// --cuda-graphs: one training step (forward + backward of every micro-batch, the device-side
// norm, clipping and non-finite check, the optimizer) captured once into a CUDA graph and
// replayed for every later step (one GPU, or every rank of dp/tp over NCCL, whose collectives
// become graph nodes; the device step of device_step.hpp).
//   steps 1-2         eager (warm-up), with the allocator's private pool open: plans,
//                     workspaces, the optimizer state and every transient block of a step
//                     are made here;
//   step 3 (capture)  the same work queued on the compute stream under a thread-local stream
//                     capture (nothing runs), its allocations served by the pool (no
//                     cudaMalloc), then the graph is instantiated and launched once;
//   later steps       the graph is launched: no host code of the step runs at all.
// The step's inputs are fixed device buffers (inputs()): the caller copies each step's batch
// into them before run() (device to device), so the recorded kernels read the new batch.
// Anything the host decides per step must therefore live on the device (the learning rate and
// AdamW's step count from the device step's table, the clip factor, the non-finite check).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "trident/core/device.hpp"

namespace trident::train {

class CudaGraphStep {
 public:
  explicit CudaGraphStep(Device device);
  ~CudaGraphStep();
  CudaGraphStep(const CudaGraphStep&) = delete;
  CudaGraphStep& operator=(const CudaGraphStep&) = delete;

  // Runs one step: `queue_step` queues the step's device work (it must not wait for the
  // device). Eager the first kWarmupSteps times, then captured and launched, then launched.
  // Returns whether `queue_step` ran (warm-up or capture): its host-side effects happened.
  bool run(const std::function<void()>& queue_step);
  int64_t captures() const { return captures_; }
  int64_t launches() const { return launches_; }  // graph launches (the capture's included)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  // Eager steps before the capture, with the pool open. Two: the first step differs from the
  // steady state (gradients and optimizer state are created, not reused), and the capture must
  // find in the pool every block size the steady step frees and reallocates.
  static constexpr int64_t kWarmupSteps = 2;
  int64_t warmups_ = 0, captures_ = 0, launches_ = 0;
};

}  // namespace trident::train
