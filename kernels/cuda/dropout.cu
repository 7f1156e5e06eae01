// Inverted dropout from the counter-based stream of kernels/cpu/dropout.cpp: element i of a
// call (seed, offset) draws u = (mix(key + (offset + i + 1) * 0x9E3779B97F4A7C15) >> 40) * 2^-24
// with key = mix(seed), mix the splitmix64 finaliser, and is dropped when u < p; kept elements
// are scaled by 1/(1-p) (rounded to the storage type, as the CPU stores it in the mask). Integer
// arithmetic only up to the final exact conversion, so the masks match the CPU bit for bit.
#include <string>

#include "common.cuh"
#include "trident/kernels/cuda/dropout.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

__host__ __device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void dropout_forward_kernel(T* out, T* mask, const T* inp, int64_t n, float p,
                                       uint64_t key, uint64_t offset, T keep) {
  const float keep_f = to_float(keep);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = mix64(key + (offset + static_cast<uint64_t>(i) + 1) * kGolden);
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    const bool drop = u < p;
    mask[i] = drop ? from_float<T>(0.0f) : keep;
    out[i] = from_float<T>(to_float(inp[i]) * (drop ? 0.0f : keep_f));
  }
}

template <typename T>
__global__ void dropout_constant_kernel(T* out, T* mask, const T* inp, int64_t n, float m) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    mask[i] = from_float<T>(m);
    out[i] = from_float<T>(to_float(inp[i]) * m);
  }
}

template <typename T>
__global__ void dropout_backward_kernel(T* dinp, const T* dout, const T* mask, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dinp[i] = from_float<T>(to_float(dout[i]) * to_float(mask[i]));
  }
}

}  // namespace

void dropout_forward(ScalarType t, void* out, void* mask, const void* inp, int64_t n, float p,
                     uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (!(p >= 0.0f && p <= 1.0f)) {
    throw std::invalid_argument("dropout_forward: p = " + std::to_string(p) + " is outside [0, 1]");
  }
  if (n <= 0) return;
  const unsigned grid = detail::grid_for(n, 256);
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "dropout", {
    if (p == 0.0f || p == 1.0f) {
      TRIDENT_LAUNCH(dropout_constant_kernel<T>, grid, 256, 0, stream)
      (static_cast<T*>(out), static_cast<T*>(mask), static_cast<const T*>(inp), n,
       p == 0.0f ? 1.0f : 0.0f);
    } else {
      const float keep = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
      T keep_t;
      if constexpr (sizeof(T) == 4) {
        keep_t = keep;
      } else {
        keep_t = __float2bfloat16_rn(keep);
      }
      TRIDENT_LAUNCH(dropout_forward_kernel<T>, grid, 256, 0, stream)
      (static_cast<T*>(out), static_cast<T*>(mask), static_cast<const T*>(inp), n, p, mix64(seed),
       offset, keep_t);
    }
    check_launch("dropout_forward_kernel");
  });
}

void dropout_backward(ScalarType t, void* dinp, const void* dout, const void* mask, int64_t n,
                      cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "dropout_backward", {
    TRIDENT_LAUNCH(dropout_backward_kernel<T>, detail::grid_for(n, 256), 256, 0, stream)
    (static_cast<T*>(dinp), static_cast<const T*>(dout), static_cast<const T*>(mask), n);
    check_launch("dropout_backward_kernel");
  });
}

}  // namespace trident::kernels::cuda
