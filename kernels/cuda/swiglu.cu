// SwiGLU's gate, elementwise, one thread per element in a grid-stride loop (contract in
// kernels/cpu/swiglu.hpp): s = 1 / (1 + exp(-g)), out = g s up; backward dgate =
// dout up s (1 + g (1 - s)), dup = dout g s. exp(-g) = inf for g < -88 gives s = 0, no NaN.
#include "common.cuh"
#include "trident/kernels/cuda/swiglu.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;

template <typename T>
__global__ void swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]);
    const float s = 1.0f / (1.0f + expf(-g));
    out[i] = from_float<T>(g * s * to_float(up[i]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* gate, const T* up, const T* dout,
                                       int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]), dy = to_float(dout[i]);
    const float s = 1.0f / (1.0f + expf(-g));
    dgate[i] = from_float<T>(dy * to_float(up[i]) * (s * (1.0f + g * (1.0f - s))));
    dup[i] = from_float<T>(dy * g * s);
  }
}

}  // namespace

void swiglu_forward(ScalarType t, void* out, const void* gate, const void* up, int64_t n,
                    cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "swiglu", {
    TRIDENT_LAUNCH(swiglu_forward_kernel<T>, detail::grid_for(n, 256), 256, 0, stream)
    (static_cast<T*>(out), static_cast<const T*>(gate), static_cast<const T*>(up), n);
    check_launch("swiglu_forward_kernel");
  });
}

void swiglu_backward(ScalarType t, void* dgate, void* dup, const void* gate, const void* up,
                     const void* dout, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "swiglu_backward", {
    TRIDENT_LAUNCH(swiglu_backward_kernel<T>, detail::grid_for(n, 256), 256, 0, stream)
    (static_cast<T*>(dgate), static_cast<T*>(dup), static_cast<const T*>(gate),
     static_cast<const T*>(up), static_cast<const T*>(dout), n);
    check_launch("swiglu_backward_kernel");
  });
}

}  // namespace trident::kernels::cuda
