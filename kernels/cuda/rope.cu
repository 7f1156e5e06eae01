// Rotary position embeddings on inp (B, T, NH * D), rows contiguous (contract in
// kernels/cpu/rope.hpp). One thread per (row, pair index i < D/2) in a grid-stride loop: it
// computes the angle of its position once (HF's f32 steps; pow, cos and sin in double, as the
// CPU kernel, so both backends rotate by the same rounded cos and sin) and rotates pair i of
// every head. Each pair is read before it is written by the same thread: out may be inp.
#include "common.cuh"
#include "trident/kernels/cuda/rope.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;

template <typename T>
__global__ void rope_kernel(T* out, const T* inp, int64_t rows, int64_t T_, int64_t NH, int64_t D,
                            float base, int64_t position_offset, float sign) {
  const int64_t half = D / 2, width = NH * D;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < rows * half;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / half, i = idx % half;
    const int64_t p = position_offset + r % T_;
    const float e = static_cast<float>(2 * i) / static_cast<float>(D);
    const float inv_freq = 1.0f / static_cast<float>(pow(static_cast<double>(base), double(e)));
    const double a = static_cast<double>(static_cast<float>(p) * inv_freq);
    const float c = static_cast<float>(cos(a)), s = sign * static_cast<float>(sin(a));
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t o = r * width + h * D + i;
      const float x1 = to_float(inp[o]), x2 = to_float(inp[o + half]);
      out[o] = from_float<T>(x1 * c - x2 * s);
      out[o + half] = from_float<T>(x2 * c + x1 * s);
    }
  }
}

}  // namespace

void rope_forward(ScalarType t, void* out, const void* inp, int64_t B, int64_t T_, int64_t NH,
                  int64_t D, double theta, int64_t position_offset, bool inverse,
                  cudaStream_t stream) {
  const int64_t rows = B * T_;
  if (rows <= 0 || NH <= 0 || D <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "rope", {
    TRIDENT_LAUNCH(rope_kernel<T>, detail::grid_for(rows * (D / 2), 256), 256, 0, stream)
    (static_cast<T*>(out), static_cast<const T*>(inp), rows, T_, NH, D, static_cast<float>(theta),
     position_offset, inverse ? -1.0f : 1.0f);
    check_launch("rope_kernel");
  });
}

}  // namespace trident::kernels::cuda
