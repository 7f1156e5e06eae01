// GELU (tanh form) and row softmax.
// GELU, as kernels/cpu/activation.cpp: u = k (x + a x^3), k = sqrt(2/pi), a = 0.044715,
//   y = x s with s = sigmoid(2u) = 1 / (1 + e), e = exp(min(-2u, 80)) (no cancellation in the
//   negative tail); dy/dx = s + 2 x s (1 - s) k (1 + 3 a x^2), 1 - s = e s. A thread per 16 bytes
//   (4 f32 / 8 bf16, vec.cuh) when the buffers are 16-byte aligned, else per element.
// Softmax over rows (rows, cols): one block of 256 threads per row; max, then sum of exp(x - max)
// (block reductions with a fixed tree), then y = exp(x - max) / sum. Backward: dot = <dy, y>,
// dx = y (dy - dot).
#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/activation.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::check_launch;
using detail::from_float;
using detail::to_float;

constexpr float kGeluK = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;
constexpr int kThreads = 256;

__device__ __forceinline__ float gelu_e(float x) {
  return expf(fminf(-2.0f * kGeluK * (x + kGeluA * x * x * x), 80.0f));
}

template <typename T, int W>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K];
    detail::load_f<K>(inp + i, x);
#pragma unroll
    for (int k = 0; k < K; ++k) x[k] = x[k] / (1.0f + gelu_e(x[k]));
    detail::store_f<K>(out + i, x);
  });
}

template <typename T, int W>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K], dy[K];
    detail::load_f<K>(inp + i, x);
    detail::load_f<K>(dout + i, dy);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const float e = gelu_e(x[k]), s = 1.0f / (1.0f + e);
      const float d =
          s * (1.0f + 2.0f * kGeluK * x[k] * e * s * (1.0f + 3.0f * kGeluA * x[k] * x[k]));
      dy[k] *= d;
    }
    detail::store_f<K>(dinp + i, dy);
  });
}

template <typename T>
__global__ void softmax_forward_kernel(T* out, const T* inp, int64_t rows, int64_t cols) {
  TRIDENT_SHARED(float, sh, [32]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* x = inp + r * cols;
    T* y = out + r * cols;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, to_float(x[c]));
    mx = block_max(mx, sh);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(to_float(x[c]) - mx);
    s = block_sum(s, sh);
    const float inv = 1.0f / s;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      y[c] = from_float<T>(expf(to_float(x[c]) - mx) * inv);
    }
  }
}

template <typename T>
__global__ void softmax_backward_kernel(T* dinp, const T* out, const T* dout, int64_t rows,
                                        int64_t cols) {
  TRIDENT_SHARED(float, sh, [32]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* y = out + r * cols;
    const T* dy = dout + r * cols;
    T* dx = dinp + r * cols;
    float dot = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dot += to_float(dy[c]) * to_float(y[c]);
    dot = block_sum(dot, sh);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      dx[c] = from_float<T>(to_float(y[c]) * (to_float(dy[c]) - dot));
    }
  }
}

unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t{1} << 20));
}

}  // namespace

void gelu_forward(ScalarType t, void* out, const void* inp, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "gelu", {
    TRIDENT_VEC_DISPATCH(T, detail::vec_width<T>(0, {out, inp}), {
      TRIDENT_LAUNCH((gelu_forward_kernel<T, W>), detail::grid_for((n + W - 1) / W, kThreads),
                     kThreads, 0, stream)
      (static_cast<T*>(out), static_cast<const T*>(inp), n);
      check_launch("gelu_forward_kernel");
    });
  });
}

void gelu_backward(ScalarType t, void* dinp, const void* inp, const void* dout, int64_t n,
                   cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "gelu_backward", {
    TRIDENT_VEC_DISPATCH(T, detail::vec_width<T>(0, {dinp, inp, dout}), {
      TRIDENT_LAUNCH((gelu_backward_kernel<T, W>), detail::grid_for((n + W - 1) / W, kThreads),
                     kThreads, 0, stream)
      (static_cast<T*>(dinp), static_cast<const T*>(inp), static_cast<const T*>(dout), n);
      check_launch("gelu_backward_kernel");
    });
  });
}

void softmax_forward(ScalarType t, void* out, const void* inp, int64_t rows, int64_t cols,
                     cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "softmax", {
    TRIDENT_LAUNCH(softmax_forward_kernel<T>, row_grid(rows), kThreads, 0, stream)
    (static_cast<T*>(out), static_cast<const T*>(inp), rows, cols);
    check_launch("softmax_forward_kernel");
  });
}

void softmax_backward(ScalarType t, void* dinp, const void* out, const void* dout, int64_t rows,
                      int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "softmax_backward", {
    TRIDENT_LAUNCH(softmax_backward_kernel<T>, row_grid(rows), kThreads, 0, stream)
    (static_cast<T*>(dinp), static_cast<const T*>(out), static_cast<const T*>(dout), rows, cols);
    check_launch("softmax_backward_kernel");
  });
}

}  // namespace trident::kernels::cuda
