// Softmax cross entropy; probabilities are never stored. logits (N, V) row-major, targets (N).
// Forward: one 256-thread block per row: max (block reduction), then sum exp(x - max),
// lse = max + log(sum), loss = lse - x[target] (0 for target < 0). Backward: one block per row
// recomputes exp(x - lse) from the saved lse: dx = (p - [j == target]) * dloss, zero rows for
// ignored targets. All arithmetic in fp32.
#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/cross_entropy.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;

constexpr int kThreads = 256;

template <typename T>
__global__ void cross_entropy_forward_kernel(T* losses, T* lse, const T* logits,
                                             const int32_t* targets, int64_t N, int64_t V,
                                             int32_t* bad_position) {
  TRIDENT_SHARED(float, sh, [32]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * V;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, to_float(x[j]));
    mx = detail::block_max(mx, sh);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(to_float(x[j]) - mx);
    s = detail::block_sum(s, sh);
    if (threadIdx.x == 0) {
      const float l = mx + logf(s);
      const int32_t t = targets[r];
      float loss = 0.0f;
      if (t >= V) {
        atomicMin(bad_position, static_cast<int32_t>(min(r, int64_t{kNoBadIndex})));
      } else if (t >= 0) {
        loss = l - to_float(x[t]);
      }
      lse[r] = from_float<T>(l);
      losses[r] = from_float<T>(loss);
    }
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const T* lse,
                                              const int32_t* targets, const T* dlosses, int64_t N,
                                              int64_t V) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * V;
    T* dx = dlogits + r * V;
    const int32_t t = targets[r];
    if (t < 0) {
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dx[j] = from_float<T>(0.0f);
      continue;
    }
    const float l = to_float(lse[r]), dl = to_float(dlosses[r]);
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float p = expf(to_float(x[j]) - l);
      dx[j] = from_float<T>((p - (j == t ? 1.0f : 0.0f)) * dl);
    }
  }
}

unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t{1} << 20));
}

}  // namespace

void cross_entropy_forward(ScalarType t, void* losses, void* lse, const void* logits,
                           const int32_t* targets, int64_t N, int64_t V, int32_t* bad_position,
                           cudaStream_t stream) {
  detail::check_cuda(cudaMemsetAsync(bad_position, 0x7F, sizeof(int32_t), stream),
                     "cross_entropy_forward");
  if (N <= 0) return;
  if (V <= 0) throw std::invalid_argument("cross_entropy_forward: no classes (V = 0)");
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy", {
    TRIDENT_LAUNCH(cross_entropy_forward_kernel<T>, row_grid(N), kThreads, 0, stream)(
        static_cast<T*>(losses), static_cast<T*>(lse), static_cast<const T*>(logits), targets, N,
        V, bad_position);
    check_launch("cross_entropy_forward_kernel");
  });
}

void cross_entropy_backward(ScalarType t, void* dlogits, const void* logits, const void* lse,
                            const int32_t* targets, const void* dlosses, int64_t N, int64_t V,
                            cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy_backward", {
    TRIDENT_LAUNCH(cross_entropy_backward_kernel<T>, row_grid(N), kThreads, 0, stream)(
        static_cast<T*>(dlogits), static_cast<const T*>(logits), static_cast<const T*>(lse),
        targets, static_cast<const T*>(dlosses), N, V);
    check_launch("cross_entropy_backward_kernel");
  });
}

}  // namespace trident::kernels::cuda
