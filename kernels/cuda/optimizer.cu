// Multi-tensor AdamW and SGD (as PyTorch's multi_tensor_apply): the pointers and sizes of up
// to 32 tensors travel in the kernel's parameter block; blockIdx.y picks the tensor and the
// blocks along x stride over its elements. Per element, the arithmetic is the CPU's:
// AdamW: p = p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps) with
//        m = m + (1 - b1)(g - m), v = b2 v + (1 - b2) g^2, bc_i = 1 - b_i^step (host, double).
// SGD:   g += wd p; buf = first ? g : mu buf + (1 - dampening) g; g = nesterov ? g + mu buf : buf;
//        p -= lr g.
// The *_step_scalars variants read lr, the AdamW step count and the skip decision from a
// StepScalars block in device memory (train_step.hpp) instead of kernel arguments, so the same
// launch is right at every step (a CUDA graph replays it); each thread derives the AdamW
// constants with the host's double arithmetic. A tensor whose four buffers are 16-byte aligned
// (any the caching allocator hands out) is updated 4 floats per access (vec.cuh), with a scalar
// tail; others element by element.
#include <algorithm>
#include <cmath>
#include <string>

#include "common.cuh"
#include "trident/kernels/cuda/optimizer.hpp"
#include "trident/kernels/cuda/train_step.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {
namespace {

constexpr int kTensorsPerLaunch = 32;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocksPerTensor = 512;

struct AdamWArgs {
  float* p[kTensorsPerLaunch];
  const float* g[kTensorsPerLaunch];
  float* m[kTensorsPerLaunch];
  float* v[kTensorsPerLaunch];
  int64_t n[kTensorsPerLaunch];
};

struct SGDArgs {
  float* p[kTensorsPerLaunch];
  const float* g[kTensorsPerLaunch];
  float* buf[kTensorsPerLaunch];
  int64_t n[kTensorsPerLaunch];
  bool first[kTensorsPerLaunch];
};

__global__ void adamw_kernel(AdamWArgs a, float beta1, float beta2, float eps, float step_size,
                             float bc2_sqrt, float decay, const StepScalars* sc,
                             float weight_decay) {
  if (sc != nullptr) {  // the step's numbers from device memory, as adamw_update_multi makes them
    if (sc->skip != 0) return;
    const double b1 = beta1, b2 = beta2, step = static_cast<double>(sc->adam_step);
    const float lr = sc->lr;
    step_size = static_cast<float>(lr / (1.0 - pow(b1, step)));
    bc2_sqrt = static_cast<float>(sqrt(1.0 - pow(b2, step)));
    decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  }
  const int t = blockIdx.y;
  float* p = a.p[t];
  const float* g = a.g[t];
  float* m = a.m[t];
  float* v = a.v[t];
  const int64_t n = a.n[t];
  const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
  const auto update = [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float pk[K], gk[K], mk[K], vk[K];
    detail::load_f<K>(p + i, pk);
    detail::load_f<K>(g + i, gk);
    detail::load_f<K>(m + i, mk);
    detail::load_f<K>(v + i, vk);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      mk[k] = mk[k] + one_minus_b1 * (gk[k] - mk[k]);
      vk[k] = beta2 * vk[k] + one_minus_b2 * gk[k] * gk[k];
      const float denom = sqrtf(vk[k]) / bc2_sqrt + eps;
      pk[k] = pk[k] * decay - step_size * (mk[k] / denom);
    }
    detail::store_f<K>(m + i, mk);
    detail::store_f<K>(v + i, vk);
    detail::store_f<K>(p + i, pk);
  };
  if (detail::aligned16(p) && detail::aligned16(g) && detail::aligned16(m) &&
      detail::aligned16(v)) {
    detail::flat_packs<4>(n, update);
  } else {
    detail::flat_packs<1>(n, update);
  }
}

__global__ void sgd_kernel(SGDArgs a, float lr, float momentum, float dampening, float weight_decay,
                           bool nesterov, const StepScalars* sc) {
  if (sc != nullptr) {
    if (sc->skip != 0) return;
    lr = sc->lr;
  }
  const int t = blockIdx.y;
  float* p = a.p[t];
  const float* g = a.g[t];
  float* buf = a.buf[t];
  const int64_t n = a.n[t];
  const bool first = a.first[t];
  const float keep = 1.0f - dampening;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float gi = g[i];
    if (weight_decay != 0.0f) gi += weight_decay * p[i];
    if (momentum != 0.0f) {
      const float b = first ? gi : momentum * buf[i] + keep * gi;
      buf[i] = b;
      gi = nesterov ? gi + momentum * b : b;
    }
    p[i] -= lr * gi;
  }
}

unsigned blocks_for(const int64_t* ns, int k) {
  int64_t mx = 1;
  for (int i = 0; i < k; ++i) mx = std::max(mx, ns[i]);
  return static_cast<unsigned>(std::min(kMaxBlocksPerTensor, (mx + kThreads - 1) / kThreads));
}

}  // namespace

namespace {
void adamw_launch(int count, float* const* params, const float* const* grads, float* const* m,
                  float* const* v, const int64_t* ns, float beta1, float beta2, float eps,
                  float step_size, float bc2_sqrt, float decay, const StepScalars* sc,
                  float weight_decay, cudaStream_t stream) {
  for (int base = 0; base < count; base += kTensorsPerLaunch) {
    const int k = std::min(kTensorsPerLaunch, count - base);
    AdamWArgs a{};
    for (int i = 0; i < k; ++i) {
      a.p[i] = params[base + i];
      a.g[i] = grads[base + i];
      a.m[i] = m[base + i];
      a.v[i] = v[base + i];
      a.n[i] = ns[base + i];
    }
    TRIDENT_LAUNCH(adamw_kernel, dim3(blocks_for(ns + base, k), k), kThreads, 0, stream)
    (a, beta1, beta2, eps, step_size, bc2_sqrt, decay, sc, weight_decay);
    detail::check_launch("adamw_kernel");
  }
}

void sgd_launch(int count, float* const* params, const float* const* grads, float* const* bufs,
                const int64_t* ns, const bool* first_steps, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, const StepScalars* sc,
                cudaStream_t stream) {
  for (int base = 0; base < count; base += kTensorsPerLaunch) {
    const int k = std::min(kTensorsPerLaunch, count - base);
    SGDArgs a{};
    for (int i = 0; i < k; ++i) {
      if (momentum != 0.0f && bufs[base + i] == nullptr) {
        throw std::invalid_argument("sgd_update: momentum = " + std::to_string(momentum) +
                                    " needs a momentum buffer, got null");
      }
      a.p[i] = params[base + i];
      a.g[i] = grads[base + i];
      a.buf[i] = bufs[base + i];
      a.n[i] = ns[base + i];
      a.first[i] = first_steps[base + i];
    }
    TRIDENT_LAUNCH(sgd_kernel, dim3(blocks_for(ns + base, k), k), kThreads, 0, stream)
    (a, lr, momentum, dampening, weight_decay, nesterov, sc);
    detail::check_launch("sgd_kernel");
  }
}
}  // namespace

void adamw_update_multi(int count, float* const* params, const float* const* grads, float* const* m,
                        float* const* v, const int64_t* ns, float lr, float beta1, float beta2,
                        float eps, float weight_decay, int64_t step, cudaStream_t stream) {
  if (step < 1) {
    throw std::invalid_argument("adamw_update: step = " + std::to_string(step) +
                                " must be the 1-based step count");
  }
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  adamw_launch(count, params, grads, m, v, ns, beta1, beta2, eps, step_size, bc2_sqrt, decay,
               nullptr, weight_decay, stream);
}

void adamw_update_multi(int count, float* const* params, const float* const* grads, float* const* m,
                        float* const* v, const int64_t* ns, float beta1, float beta2, float eps,
                        float weight_decay, const StepScalars* scalars, cudaStream_t stream) {
  adamw_launch(count, params, grads, m, v, ns, beta1, beta2, eps, 0, 0, 0, scalars, weight_decay,
               stream);
}

void sgd_update_multi(int count, float* const* params, const float* const* grads,
                      float* const* bufs, const int64_t* ns, const bool* first_steps, float lr,
                      float momentum, float dampening, float weight_decay, bool nesterov,
                      cudaStream_t stream) {
  sgd_launch(count, params, grads, bufs, ns, first_steps, lr, momentum, dampening, weight_decay,
             nesterov, nullptr, stream);
}

void sgd_update_multi(int count, float* const* params, const float* const* grads,
                      float* const* bufs, const int64_t* ns, const bool* first_steps,
                      float momentum, float dampening, float weight_decay, bool nesterov,
                      const StepScalars* scalars, cudaStream_t stream) {
  sgd_launch(count, params, grads, bufs, ns, first_steps, 0, momentum, dampening, weight_decay,
             nesterov, scalars, stream);
}

}  // namespace trident::kernels::cuda
