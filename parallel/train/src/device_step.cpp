#include "device_step.hpp"

#include "trident/core/backend.hpp"
#include "trident/core/error.hpp"
#ifdef TRIDENT_WITH_NCCL
#include "trident/parallel/nccl_communicator.hpp"
#endif

namespace trident::train {

bool collectives_on_device(const Communicator& c) {
  if (c.size() == 1) return true;
#ifdef TRIDENT_WITH_NCCL
  return dynamic_cast<const NcclCommunicator*>(&c) != nullptr;
#else
  return false;
#endif
}

DeviceStep::DeviceStep(Device device, const optim::CosineSchedule& schedule, int64_t steps,
                       int64_t window, int64_t micro_batches, int64_t start_step,
                       int64_t optimizer_steps, Communicator& norm_group, Communicator& loss_group)
    : window_(window), norm_group_(norm_group), loss_group_(loss_group) {
  TRIDENT_CHECK(device.is_cuda(), "DeviceStep: ", device.str(), " is not a CUDA device");
  TRIDENT_CHECK(window >= 1 && steps >= 1 && micro_batches >= 1, "DeviceStep: window ", window,
                ", ", steps, " steps, ", micro_batches, " micro-batches");
  for (const Communicator* c : {&norm_group, &loss_group}) {
    TRIDENT_CHECK(collectives_on_device(*c), "DeviceStep: the ", c->name(), " group of ", c->size(),
                  " ranks does not run its collectives on the device (NCCL)");
  }
  Backend& be = backend_for(device);
  const int64_t bytes = static_cast<int64_t>(be.step_scalars_bytes());
  scalars_ = Tensor::empty({(bytes + 7) / 8}, DType::I64, device);
  be.step_scalars_init(scalars_.raw_data(), start_step, optimizer_steps);
  micro_losses_ = Tensor::zeros({micro_batches}, DType::F32, device);
  sum_squares_ = Tensor::zeros({1}, DType::F64, device);
  loss_sum_ = Tensor::zeros({1}, DType::F64, device);
  std::vector<float> lrs(static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) lrs[static_cast<size_t>(s)] = schedule.lr(s);
  lr_table_ = Tensor::from_vector(lrs, {steps}, device);
  window_numbers_ = Tensor::zeros({3, window}, DType::F64, device);
}

void DeviceStep::finish(DataParallelReducer& reducer, const std::vector<double>& norm_weights,
                        float grad_clip, bool stop_on_nonfinite, int64_t fault_step) {
  double* sq = sum_squares_.data<double>();
  double* win = window_numbers_.data<double>();
  reducer.grad_sum_squares_local_to(norm_weights, sq);
  Backend& be = backend_for(scalars_.device());
  // NCCL on device buffers: queued in stream order, waited on by the compute stream, never by
  // the host (a capture records them as graph nodes).
  if (norm_group_.size() > 1) norm_group_.all_reduce(sq, 1, DType::F64, ReduceOp::Sum);
  double* loss_sum = nullptr;
  if (loss_group_.size() > 1) {
    loss_sum = loss_sum_.data<double>();
    be.train_step_loss_sum(micro_losses_.data<float>(), micro_losses_.numel(), loss_sum);
    loss_group_.all_reduce(loss_sum, 1, DType::F64, ReduceOp::Sum);
  }
  be.train_step_finish(scalars_.raw_data(), micro_losses_.data<float>(), micro_losses_.numel(),
                       loss_sum, loss_group_.size(), sq, grad_clip, stop_on_nonfinite, fault_step,
                       lr_table_.data<float>(), lr_table_.numel(), win, win + window_,
                       win + 2 * window_, window_);
}

std::vector<DeviceStep::Numbers> DeviceStep::read(int64_t first, int64_t count) const {
  TRIDENT_CHECK(count >= 0 && count <= window_, "DeviceStep::read: ", count,
                " steps do not fit the window of ", window_);
  const std::vector<double> w = window_numbers_.to_vector<double>();
  const size_t n = static_cast<size_t>(window_);
  std::vector<Numbers> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const size_t slot = static_cast<size_t>((first + i) % window_);
    out[static_cast<size_t>(i)] = {w[slot], w[n + slot], w[2 * n + slot] != 0};
  }
  return out;
}

}  // namespace trident::train
