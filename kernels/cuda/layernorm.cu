// Layer normalisation over the last dimension of inp (N, C), rows contiguous.
// Forward: one warp per row (8 rows per 256-thread block); mean = sum(x)/C, then
// var = sum((x-mean)^2)/C in a second pass over the row (it is in L1 by then), rstd =
// 1/sqrt(var + eps), out = (x - mean) rstd w + b; mean and rstd (N) saved in f32 whatever the
// storage type (backward rebuilds norm from them: a bf16 mean near 10 is off by up to 0.03).
// Fused residual (llm.c's fused_residual_forward): the same kernel first writes residual =
// x + delta, rounded to the storage type, and normalises that rounded row (the values of an add
// then a layer norm, one pass over the inputs fewer).
// Backward, with norm = (x - mean) rstd and dnorm = dout w:
//   dinp = [dresidual +] rstd (dnorm - mean(dnorm) - norm mean(dnorm norm))   warp per row;
//   dweight = sum_rows dout norm, dbias = sum_rows dout          deterministic column sums:
//   block (32 x 8) threads per 32 columns and a fixed chunk of rows, then the chunks in order.
// The row kernels move 16 bytes per access (4 f32 / 8 bf16, vec.cuh) when C is a multiple of
// that and every row pointer is 16-byte aligned, element by element otherwise.
#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/layernorm.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::load_f;
using detail::round_to;
using detail::store_f;
using detail::to_float;
using detail::warp_sum;

constexpr int kRowsPerBlock = 8;

// out = layernorm(src) with src = x, or, when delta is not null, src = residual = x + delta
// (written here first; each lane reads back only the elements it wrote).
template <typename T, int W>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, T* residual,
                                         const T* inp, const T* delta, const T* weight,
                                         const T* bias, int64_t N, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= N) return;
  const int64_t off = row * C;
  const T* src = delta != nullptr ? residual + off : inp + off;
  float s = 0.0f;
  for (int64_t c = lane * W; c < C; c += 32 * W) {
    float a[W];
    load_f<W>(inp + off + c, a);
    if (delta != nullptr) {
      float d[W];
      load_f<W>(delta + off + c, d);
#pragma unroll
      for (int k = 0; k < W; ++k) a[k] = round_to<T>(a[k] + d[k]);
      store_f<W>(residual + off + c, a);
    }
#pragma unroll
    for (int k = 0; k < W; ++k) s += a[k];
  }
  const float m = warp_sum(s) / static_cast<float>(C);
  float v = 0.0f;
  for (int64_t c = lane * W; c < C; c += 32 * W) {
    float a[W];
    load_f<W>(src + c, a);
#pragma unroll
    for (int k = 0; k < W; ++k) v += (a[k] - m) * (a[k] - m);
  }
  const float rs = rsqrtf(warp_sum(v) / static_cast<float>(C) + eps);
  for (int64_t c = lane * W; c < C; c += 32 * W) {
    float a[W], w[W], b[W];
    load_f<W>(src + c, a);
    load_f<W>(weight + c, w);
    load_f<W>(bias + c, b);
#pragma unroll
    for (int k = 0; k < W; ++k) a[k] = (a[k] - m) * rs * w[k] + b[k];
    store_f<W>(out + off + c, a);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

// dinp = [dres +] the layer norm's input gradient; dres may be null or equal to dinp.
template <typename T, int W>
__global__ void layernorm_dinp_kernel(T* dinp, const T* dres, const T* dout, const T* inp,
                                      const T* weight, const float* mean, const float* rstd,
                                      int64_t N, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= N) return;
  const int64_t off = row * C;
  const float m = mean[row], rs = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int64_t c = lane * W; c < C; c += 32 * W) {
    float dy[W], x[W], w[W];
    load_f<W>(dout + off + c, dy);
    load_f<W>(inp + off + c, x);
    load_f<W>(weight + c, w);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float dnorm = dy[k] * w[k];
      a += dnorm;
      b += dnorm * (x[k] - m) * rs;
    }
  }
  const float inv_c = 1.0f / static_cast<float>(C);
  const float dnorm_mean = warp_sum(a) * inv_c, dnorm_norm_mean = warp_sum(b) * inv_c;
  for (int64_t c = lane * W; c < C; c += 32 * W) {
    float dy[W], x[W], w[W], r[W];
    load_f<W>(dout + off + c, dy);
    load_f<W>(inp + off + c, x);
    load_f<W>(weight + c, w);
    if (dres != nullptr) {
      load_f<W>(dres + off + c, r);
    } else {
#pragma unroll
      for (int k = 0; k < W; ++k) r[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float norm = (x[k] - m) * rs;
      r[k] += rs * (dy[k] * w[k] - dnorm_mean - norm * dnorm_norm_mean);
    }
    store_f<W>(dinp + off + c, r);
  }
}

// Partial dweight/dbias over rows [y * per_chunk, ...) for 32 columns; written to
// partial[(2 * y) * C + c] (weight) and partial[(2 * y + 1) * C + c] (bias), or directly to
// dweight/dbias when there is one chunk.
template <typename T>
__global__ void layernorm_param_partial_kernel(const T* dout, const T* inp, const float* mean,
                                               const float* rstd, int64_t N, int64_t C,
                                               int64_t per_chunk, float* partial, T* dweight,
                                               T* dbias) {
  TRIDENT_SHARED(float, sw, [8][33]);
  TRIDENT_SHARED(float, sb, [8][33]);
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * per_chunk, r1 = min(N, r0 + per_chunk);
  float aw = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float dy = to_float(dout[r * C + c]);
      const float norm = (to_float(inp[r * C + c]) - mean[r]) * rstd[r];
      aw += dy * norm;
      ab += dy;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float w = 0.0f, b = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      w += sw[k][threadIdx.x];
      b += sb[k][threadIdx.x];
    }
    if (partial == nullptr) {
      dweight[c] = from_float<T>(w);
      dbias[c] = from_float<T>(b);
    } else {
      partial[(2 * blockIdx.y) * C + c] = w;
      partial[(2 * blockIdx.y + 1) * C + c] = b;
    }
  }
}

template <typename T>
__global__ void layernorm_param_final_kernel(const float* partial, int64_t chunks, int64_t C,
                                             T* dweight, T* dbias) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    float w = 0.0f, b = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) {
      w += partial[(2 * k) * C + c];
      b += partial[(2 * k + 1) * C + c];
    }
    dweight[c] = from_float<T>(w);
    dbias[c] = from_float<T>(b);
  }
}

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
}

void forward_impl(ScalarType t, void* out, float* mean, float* rstd, void* residual,
                  const void* inp, const void* delta, const void* weight, const void* bias,
                  int64_t N, int64_t C, float eps, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "layernorm", {
    const int width = detail::vec_width<T>(C, {out, residual, inp, delta, weight, bias});
    TRIDENT_VEC_DISPATCH(T, width, {
      TRIDENT_LAUNCH((layernorm_forward_kernel<T, W>), row_blocks(N), 32 * kRowsPerBlock, 0, stream)
      (static_cast<T*>(out), mean, rstd, static_cast<T*>(residual), static_cast<const T*>(inp),
       static_cast<const T*>(delta), static_cast<const T*>(weight), static_cast<const T*>(bias), N,
       C, eps);
      check_launch("layernorm_forward_kernel");
    });
  });
}

void backward_impl(ScalarType t, void* dinp, void* dweight, void* dbias, const void* dresidual,
                   const void* dout, const void* inp, const void* weight, const float* mean,
                   const float* rstd, int64_t N, int64_t C, Scratch& scratch, cudaStream_t stream) {
  if (C <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "layernorm_backward", {
    T* dw = static_cast<T*>(dweight);
    T* db = static_cast<T*>(dbias);
    if (N <= 0) {
      detail::check_cuda(cudaMemsetAsync(dw, 0, size_t(C) * sizeof(T), stream),
                         "layernorm_backward");
      detail::check_cuda(cudaMemsetAsync(db, 0, size_t(C) * sizeof(T), stream),
                         "layernorm_backward");
      return;
    }
    const T* dy = static_cast<const T*>(dout);
    const T* x = static_cast<const T*>(inp);
    const float* m = mean;
    const float* rs = rstd;
    const int width = detail::vec_width<T>(C, {dinp, dresidual, dout, inp, weight});
    TRIDENT_VEC_DISPATCH(T, width, {
      TRIDENT_LAUNCH((layernorm_dinp_kernel<T, W>), row_blocks(N), 32 * kRowsPerBlock, 0, stream)
      (static_cast<T*>(dinp), static_cast<const T*>(dresidual), dy, x,
       static_cast<const T*>(weight), m, rs, N, C);
      check_launch("layernorm_dinp_kernel");
    });
    const int64_t chunks = std::min<int64_t>(256, std::max<int64_t>(1, (N + 63) / 64));
    const int64_t per_chunk = (N + chunks - 1) / chunks;
    const dim3 block(32, 8),
        grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(chunks));
    float* partial = chunks > 1 ? scratch.get_as<float>(2 * chunks * C) : nullptr;
    TRIDENT_LAUNCH(layernorm_param_partial_kernel<T>, grid, block, 0, stream)
    (dy, x, m, rs, N, C, per_chunk, partial, dw, db);
    check_launch("layernorm_param_partial_kernel");
    if (partial != nullptr) {
      TRIDENT_LAUNCH(layernorm_param_final_kernel<T>, detail::grid_for(C, 256), 256, 0, stream)
      (partial, chunks, C, dw, db);
      check_launch("layernorm_param_final_kernel");
    }
  });
}

}  // namespace

void layernorm_forward(ScalarType t, void* out, float* mean, float* rstd, const void* inp,
                       const void* weight, const void* bias, int64_t N, int64_t C, float eps,
                       cudaStream_t stream) {
  forward_impl(t, out, mean, rstd, nullptr, inp, nullptr, weight, bias, N, C, eps, stream);
}

void layernorm_backward(ScalarType t, void* dinp, void* dweight, void* dbias, const void* dout,
                        const void* inp, const void* weight, const float* mean, const float* rstd,
                        int64_t N, int64_t C, Scratch& scratch, cudaStream_t stream) {
  backward_impl(t, dinp, dweight, dbias, nullptr, dout, inp, weight, mean, rstd, N, C, scratch,
                stream);
}

void residual_layernorm_forward(ScalarType t, void* residual, void* out, float* mean, float* rstd,
                                const void* x, const void* delta, const void* weight,
                                const void* bias, int64_t N, int64_t C, float eps,
                                cudaStream_t stream) {
  forward_impl(t, out, mean, rstd, residual, x, delta, weight, bias, N, C, eps, stream);
}

void residual_layernorm_backward(ScalarType t, void* dinp, void* dweight, void* dbias,
                                 const void* dresidual, const void* dout, const void* residual,
                                 const void* weight, const float* mean, const float* rstd,
                                 int64_t N, int64_t C, Scratch& scratch, cudaStream_t stream) {
  backward_impl(t, dinp, dweight, dbias, dresidual, dout, residual, weight, mean, rstd, N, C,
                scratch, stream);
}

}  // namespace trident::kernels::cuda
