// Fused optimizer steps over one contiguous parameter tensor, float32, same arithmetic order as
// torch.optim (single-tensor path), so trajectories match PyTorch to rounding.
// AdamW: p *= 1 - lr*wd; m = m + (1-b1) (g - m) (= b1 m + (1-b1) g); v = b2 v + (1-b2) g^2;
//        p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^step.
// g = grad * grad_scale (the clip factor, f32).
// SGD:   g += wd p; buf = first ? g : mu buf + (1-dampening) g; g = nesterov ? g + mu buf : buf;
//        p -= lr g.
#include "trident/kernels/cpu/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {

namespace {

// Runs body(g, lo, hi) for elements [lo, hi) of [0, n) with g[i - lo] the gradient of element i:
// `grad` itself when grad_scale is 1, else grad * grad_scale rounded to f32 in a buffer first,
// block by block in parallel (what a separate scaling pass stores: the product goes through
// memory, so no FMA fuses it into the update's arithmetic).
template <typename Body>
void with_scaled_grad(const float* grad, float grad_scale, int64_t n, Body&& body) {
  if (grad_scale == 1.0f) {
    body(grad, int64_t{0}, n);
    return;
  }
  constexpr int64_t kBlock = 2048;
#pragma omp parallel for schedule(static) if (n > detail::kParallelGrain)
  for (int64_t lo = 0; lo < n; lo += kBlock) {
    const int64_t hi = std::min(n, lo + kBlock);
    float g[kBlock];
    for (int64_t i = lo; i < hi; ++i) g[i - lo] = grad[i] * grad_scale;
    body(static_cast<const float*>(g), lo, hi);
  }
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  float grad_scale) {
  if (step < 1) {
    throw std::invalid_argument("adamw_update: step = " + std::to_string(step) +
                                " must be the 1-based step count");
  }
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
  with_scaled_grad(grad, grad_scale, n, [&](const float* grads, int64_t lo, int64_t hi) {
#pragma omp parallel for simd schedule(static) if (hi - lo > detail::kParallelGrain)
    for (int64_t i = lo; i < hi; ++i) {
      const float g = grads[i - lo];
      const float mi = m[i] + one_minus_b1 * (g - m[i]);  // torch: exp_avg.lerp_(grad, 1-b1)
      const float vi = beta2 * v[i] + one_minus_b2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      param[i] = param[i] * decay - step_size * (mi / denom);
    }
  });
}

void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step,
                float grad_scale) {
  if (momentum != 0.0f && buf == nullptr) {
    throw std::invalid_argument("sgd_update: momentum = " + std::to_string(momentum) +
                                " needs a momentum buffer, got null");
  }
  const float keep = 1.0f - dampening;
  with_scaled_grad(grad, grad_scale, n, [&](const float* grads, int64_t lo, int64_t hi) {
#pragma omp parallel for simd schedule(static) if (hi - lo > detail::kParallelGrain)
    for (int64_t i = lo; i < hi; ++i) {
      float g = grads[i - lo];
      if (weight_decay != 0.0f) g += weight_decay * param[i];
      if (momentum != 0.0f) {
        const float b = first_step ? g : momentum * buf[i] + keep * g;
        buf[i] = b;
        g = nesterov ? g + momentum * b : b;
      }
      param[i] -= lr * g;
    }
  });
}

}  // namespace trident::kernels::cpu
