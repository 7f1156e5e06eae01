// RMS normalisation over the last dimension of inp (N, C), rows contiguous.
// Forward: one warp per row (8 rows per 256-thread block); rstd = 1/sqrt(sum(x^2)/C + eps),
// out = (x rstd) w; rstd (N) saved in f32 whatever the storage type.
// Backward, with norm = x rstd and dnorm = dout w:
//   dinp = rstd (dnorm - norm mean(dnorm norm))                   one warp per row;
//   dweight = sum_rows dout norm        deterministic column sums: blocks of (32 x 8) threads
//   per 32 columns and a fixed chunk of rows, then the chunks in order (as layer norm's).
#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/rms_norm.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;
using detail::warp_sum;

constexpr int kRowsPerBlock = 8;

template <typename T>
__global__ void rms_norm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight,
                                        int64_t N, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= N) return;
  const T* x = inp + row * C;
  T* y = out + row * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float v = to_float(x[c]);
    ss += v * v;
  }
  const float rs = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
  for (int64_t c = lane; c < C; c += 32)
    y[c] = from_float<T>((to_float(x[c]) * rs) * to_float(weight[c]));
  if (lane == 0) rstd[row] = rs;
}

template <typename T>
__global__ void rms_norm_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                     const float* rstd, int64_t N, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= N) return;
  const T* x = inp + row * C;
  const T* dy = dout + row * C;
  T* dx = dinp + row * C;
  const float rs = rstd[row];
  float a = 0.0f;
  for (int64_t c = lane; c < C; c += 32)
    a += to_float(dy[c]) * to_float(weight[c]) * (to_float(x[c]) * rs);
  const float dnorm_norm_mean = warp_sum(a) / static_cast<float>(C);
  for (int64_t c = lane; c < C; c += 32) {
    const float norm = to_float(x[c]) * rs;
    dx[c] = from_float<T>(rs * (to_float(dy[c]) * to_float(weight[c]) - norm * dnorm_norm_mean));
  }
}

// Partial dweight over rows [y * per_chunk, ...) for 32 columns, written to partial[y * C + c],
// or directly to dweight when there is one chunk.
template <typename T>
__global__ void rms_norm_weight_partial_kernel(const T* dout, const T* inp, const float* rstd,
                                               int64_t N, int64_t C, int64_t per_chunk,
                                               float* partial, T* dweight) {
  TRIDENT_SHARED(float, sw, [8][33]);
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * per_chunk, r1 = min(N, r0 + per_chunk);
  float aw = 0.0f;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8)
      aw += to_float(dout[r * C + c]) * (to_float(inp[r * C + c]) * rstd[r]);
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float w = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) w += sw[k][threadIdx.x];
    if (partial == nullptr) {
      dweight[c] = from_float<T>(w);
    } else {
      partial[blockIdx.y * C + c] = w;
    }
  }
}

template <typename T>
__global__ void rms_norm_weight_final_kernel(const float* partial, int64_t chunks, int64_t C,
                                             T* dweight) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    float w = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) w += partial[k * C + c];
    dweight[c] = from_float<T>(w);
  }
}

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

void rms_norm_forward(ScalarType t, void* out, float* rstd, const void* inp, const void* weight,
                      int64_t N, int64_t C, float eps, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "rms_norm", {
    TRIDENT_LAUNCH(rms_norm_forward_kernel<T>, row_blocks(N), 32 * kRowsPerBlock, 0, stream)
    (static_cast<T*>(out), rstd, static_cast<const T*>(inp), static_cast<const T*>(weight), N, C,
     eps);
    check_launch("rms_norm_forward_kernel");
  });
}

void rms_norm_backward(ScalarType t, void* dinp, void* dweight, const void* dout, const void* inp,
                       const void* weight, const float* rstd, int64_t N, int64_t C,
                       Scratch& scratch, cudaStream_t stream) {
  if (C <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "rms_norm_backward", {
    T* dw = static_cast<T*>(dweight);
    if (N <= 0) {
      detail::check_cuda(cudaMemsetAsync(dw, 0, size_t(C) * sizeof(T), stream),
                         "rms_norm_backward");
      return;
    }
    const T* dy = static_cast<const T*>(dout);
    const T* x = static_cast<const T*>(inp);
    TRIDENT_LAUNCH(rms_norm_dinp_kernel<T>, row_blocks(N), 32 * kRowsPerBlock, 0, stream)
    (static_cast<T*>(dinp), dy, x, static_cast<const T*>(weight), rstd, N, C);
    check_launch("rms_norm_dinp_kernel");
    const int64_t chunks = std::min<int64_t>(256, std::max<int64_t>(1, (N + 63) / 64));
    const int64_t per_chunk = (N + chunks - 1) / chunks;
    const dim3 block(32, 8),
        grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(chunks));
    float* partial = chunks > 1 ? scratch.get_as<float>(chunks * C) : nullptr;
    TRIDENT_LAUNCH(rms_norm_weight_partial_kernel<T>, grid, block, 0, stream)
    (dy, x, rstd, N, C, per_chunk, partial, dw);
    check_launch("rms_norm_weight_partial_kernel");
    if (partial != nullptr) {
      TRIDENT_LAUNCH(rms_norm_weight_final_kernel<T>, detail::grid_for(C, 256), 256, 0, stream)
      (partial, chunks, C, dw);
      check_launch("rms_norm_weight_final_kernel");
    }
  });
}

}  // namespace trident::kernels::cuda
