// Per-step scalars of a training step on the device (train_step.hpp): the step's loss, gradient
// norm, clip factor, learning rate, optimizer step count and skip decision, computed by one
// thread from device memory, so a step never waits for the device. The arithmetic is the host
// trainer's, in the same order and precision (double sums and divisions, rounded to float
// where the host rounds), so results are bitwise those of the host-side bookkeeping. The clip
// factor is not applied here: the optimizer's update reads it (optimizer.hpp). Over several
// ranks the loss sum and the squared norm are all-reduced on the device between the kernels
// (train_step_loss_sum, then train_step_finish reading the reduced sum).
#include <cmath>
#include <limits>

#include "common.cuh"
#include "trident/kernels/cuda/train_step.hpp"

namespace trident::kernels::cuda {
namespace {

// std::isfinite, spelled for device code too: x - x is 0 for a finite x, NaN otherwise.
__device__ __forceinline__ bool finite(double x) {
  return x - x == 0.0;
}

// The micro-batch losses summed in double, in order k = 0, 1, .. (the host's loop).
__device__ double sum_micro_losses(const float* micro_losses, int64_t m) {
  double loss = 0;
  for (int64_t k = 0; k < m; ++k) loss += micro_losses[k];
  return loss;
}

__global__ void train_step_loss_sum_kernel(const float* micro_losses, int64_t m, double* loss_sum) {
  *loss_sum = sum_micro_losses(micro_losses, m);
}

__global__ void train_step_finish_kernel(StepScalars* s, const float* micro_losses, int64_t m,
                                         const double* loss_sum, int64_t loss_ranks,
                                         const double* sum_squares, float grad_clip,
                                         bool stop_on_nonfinite, int64_t fault_step,
                                         const float* lr_table, int64_t lr_steps,
                                         StepWindow window) {
  const int64_t step = s->step;
  // Over ranks: the sum of every rank's sum, divided by their number (MPI's average).
  double loss = loss_sum != nullptr ? *loss_sum / static_cast<double>(loss_ranks)
                                    : sum_micro_losses(micro_losses, m);
  if (fault_step == step + 1) loss = std::numeric_limits<double>::quiet_NaN();
  const double norm = sqrt(*sum_squares);
  const bool nonfinite = !finite(loss) || !finite(norm);
  float clip = 1.0f;
  if (grad_clip > 0) {
    const double coef = grad_clip / (norm + 1e-6);
    if (coef < 1.0) clip = static_cast<float>(coef);
  }
  const bool skip = nonfinite || s->stopped != 0;
  if (nonfinite && stop_on_nonfinite) s->stopped = 1;
  s->skip = skip ? 1 : 0;
  s->clip = clip;
  s->lr = lr_table[step < lr_steps ? step : lr_steps - 1];
  if (!skip) s->adam_step += 1;
  const int64_t slot = step % window.window;
  window.loss[slot] = loss;
  window.grad_norm[slot] = norm;
  window.nonfinite[slot] = nonfinite ? 1.0 : 0.0;
  s->step = step + 1;
}

}  // namespace

void step_scalars_init(StepScalars* s, const StepScalars& init, cudaStream_t stream) {
  detail::check_cuda(cudaMemcpyAsync(s, &init, sizeof(StepScalars), cudaMemcpyHostToDevice, stream),
                     "step_scalars_init");
}

void train_step_loss_sum(const float* micro_losses, int64_t m, double* loss_sum,
                         cudaStream_t stream) {
  if (m < 0) {
    throw std::invalid_argument("train_step_loss_sum: " + std::to_string(m) + " micro-batches");
  }
  TRIDENT_LAUNCH(train_step_loss_sum_kernel, 1, 1, 0, stream)(micro_losses, m, loss_sum);
  detail::check_launch("train_step_loss_sum_kernel");
}

void train_step_finish(StepScalars* s, const float* micro_losses, int64_t m, const double* loss_sum,
                       int64_t loss_ranks, const double* sum_squares, float grad_clip,
                       bool stop_on_nonfinite, int64_t fault_step, const float* lr_table,
                       int64_t lr_steps, StepWindow window, cudaStream_t stream) {
  if (m < 0 || loss_ranks < 1 || lr_steps < 1 || window.window < 1) {
    throw std::invalid_argument("train_step_finish: " + std::to_string(m) + " micro-batches, " +
                                std::to_string(loss_ranks) + " loss ranks, " +
                                std::to_string(lr_steps) + " learning rates, window " +
                                std::to_string(window.window));
  }
  TRIDENT_LAUNCH(train_step_finish_kernel, 1, 1, 0, stream)
  (s, micro_losses, m, loss_sum, loss_ranks, sum_squares, grad_clip, stop_on_nonfinite, fault_step,
   lr_table, lr_steps, window);
  detail::check_launch("train_step_finish_kernel");
}

}  // namespace trident::kernels::cuda
