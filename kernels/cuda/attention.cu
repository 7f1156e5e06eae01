// Causal self-attention, flash-attention style, fp32 arithmetic on f32 or bf16 storage.
// Tiles of 32 queries x 32 keys; a block of 256 threads = 8 warps; warp w owns tile rows
// w, w+8, w+16, w+24 and lane l owns column l of a 32 x 32 score tile, or head dimensions
// l, l+32, ... of a 32 x hs accumulator. Tiles live in shared memory as fp32 rows padded to
// HS+1 floats (HS = hs rounded up to 32, 64 or 128, zero-filled), so that lanes reading
// different rows hit different banks. Per (batch, head):
// Forward, one block per query tile: for each key tile up to the diagonal, S = Q K^T * scale
//   (masked past the diagonal), online softmax (running max m and sum l per row, rescaling the
//   output accumulator), O += P V. Writes O / l and lse = m + log l (fp32) for backward.
// Backward (FlashAttention-2 recomputation, split so that no two blocks write one output):
//   D_i = dO_i . O_i                                        (one warp per row)
//   per key tile:   P = exp(S - lse), dP = dO V^T, dS = P (dP - D);
//                   dV = sum_i P^T dO, dK = scale sum_i dS^T Q   over query tiles >= key tile
//   per query tile: dQ = scale sum_j dS K                    over key tiles <= query tile
// Every element of dqkv is written exactly once; the result does not depend on scheduling.
// bf16 storage with head size 64 or 128 goes to the tensor-core kernels instead: the forward of
// attention_fa2_fwd.cu (mma.sync) always, the backward of attention_fa2_bwd.cu (mma.sync) unless
// TRIDENT_ATTENTION_DETERMINISTIC=1 asks for the kernels here; the rowdot kernel below then also
// zeroes its fp32 dQ scratch. Both save the same lse, and backward reads the forward's out itself
// (for D), so either backward follows either forward.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "attention_fa2_bwd.cuh"
#include "attention_fa2_fwd.cuh"
#include "common.cuh"
#include "trident/kernels/cuda/attention.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;
using detail::warp_max;
using detail::warp_sum;

constexpr int kTile = 32;  // queries and keys per tile
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = kTile / kWarps;  // 4
constexpr int kScoreStride = kTile + 1;

using Dims = detail::AttentionDims;

std::atomic<uint64_t> g_fa2_forward{0}, g_fa2_backward{0}, g_simt_forward{0}, g_simt_backward{0};

bool deterministic_backward_requested() {
  const char* v = std::getenv("TRIDENT_ATTENTION_DETERMINISTIC");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

size_t lse_bytes(int64_t B, int64_t T, int64_t NH) {
  return static_cast<size_t>(B * NH * T) * sizeof(float);
}

// Loads rows [row0, row0 + 32) of one head's (T, hs) slab, which starts at `base` with row
// stride `ld`, into a padded fp32 tile; rows past T and columns past hs read as zero.
template <typename T, int HS>
__device__ void load_tile(float* tile, const T* base, int64_t ld, int64_t row0, int64_t rows,
                          int64_t hs) {
  for (int idx = threadIdx.x; idx < kTile * HS; idx += kThreads) {
    const int r = idx / HS, d = idx % HS;
    const int64_t row = row0 + r;
    tile[r * (HS + 1) + d] = (row < rows && d < hs) ? to_float(base[row * ld + d]) : 0.0f;
  }
}

template <int HS>
__device__ __forceinline__ float dot_rows(const float* a, const float* b) {
  float s = 0.0f;
#pragma unroll 8
  for (int d = 0; d < HS; ++d) s += a[d] * b[d];
  return s;
}

template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(T* out, float* lse, const T* qkv, Dims D) {
  constexpr int P = HS + 1, NC = HS / 32;
  TRIDENT_DYNAMIC_SHARED(float, smem);
  float* Qs = smem;
  float* Ks = Qs + kTile * P;
  float* Vs = Ks + kTile * P;
  float* Ps = Vs + kTile * P;  // [kTile][kScoreStride]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_tiles = gridDim.x;
  const int64_t qt = n_tiles - 1 - blockIdx.x;  // longest rows first
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t q0 = qt * kTile, ld = 3 * D.C;
  const T* base = qkv + b * D.T * ld + h * D.hs;
  load_tile<T, HS>(Qs, base, ld, q0, D.T, D.hs);

  float o[kRowsPerWarp][NC];
  float m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) o[r][c] = 0.0f;
  }
  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();  // previous tiles fully used
    load_tile<T, HS>(Ks, base + D.C, ld, k0, D.T, D.hs);
    load_tile<T, HS>(Vs, base + 2 * D.C, ld, k0, D.T, D.hs);
    __syncthreads();
    const int64_t key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = warp + kWarps * r;
      const int64_t q = q0 + i;
      const bool valid = key <= q && key < D.T;
      const float s = valid ? dot_rows<HS>(Qs + i * P, Ks + lane * P) * D.scale : -INFINITY;
      // Key k0 (lane 0) is always valid: tile kt <= qt, so every row has a finite maximum.
      const float m_new = fmaxf(m[r], warp_max(s));
      const float p = valid ? expf(s - m_new) : 0.0f;
      const float corr = expf(m[r] - m_new);
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < NC; ++c) o[r][c] *= corr;
      Ps[i * kScoreStride + lane] = p;
    }
    __syncwarp();  // a warp reads only its own rows of Ps
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = warp + kWarps * r;
      for (int j = 0; j < kTile; ++j) {
        const float p = Ps[i * kScoreStride + j];
#pragma unroll
        for (int c = 0; c < NC; ++c) o[r][c] += p * Vs[j * P + lane + 32 * c];
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t q = q0 + warp + kWarps * r;
    if (q >= D.T) continue;
    const float inv = 1.0f / l[r];
    T* dst = out + (b * D.T + q) * D.C + h * D.hs;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D.hs) dst[d] = from_float<T>(o[r][c] * inv);
    }
    if (lane == 0) lse[bh * D.T + q] = m[r] + logf(l[r]);
  }
}

// Dd[bh * T + t] = dO . O over the head's hs columns; one warp per (b, t, h). When dq_zero is
// given (the tensor-core backward's fp32 dQ scratch, (B, T, C)), the warp also zeroes the same
// hs columns of it: no separate memset launch.
template <typename T>
__global__ void attention_rowdot_kernel(float* Dd, float* dq_zero, const T* dout, const T* out,
                                        Dims D) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = D.B * D.T * D.NH;
  for (int64_t w = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; w < rows;
       w += int64_t(gridDim.x) * (blockDim.x / 32)) {
    const int64_t h = w % D.NH, bt = w / D.NH, b = bt / D.T, t = bt % D.T;
    const int64_t off = bt * D.C + h * D.hs;
    float s = 0.0f;
    for (int64_t d = lane; d < D.hs; d += 32) s += to_float(dout[off + d]) * to_float(out[off + d]);
    if (dq_zero != nullptr) {
      for (int64_t d = lane; d < D.hs; d += 32) dq_zero[off + d] = 0.0f;
    }
    s = warp_sum(s);
    if (lane == 0) Dd[(b * D.NH + h) * D.T + t] = s;
  }
}

// Loads lse and D for the 32 query rows from q0 (zeros past T).
__device__ void load_row_stats(float* lse_s, float* d_s, const float* lse, const float* Dd,
                               int64_t row_base, int64_t q0, int64_t T) {
  if (threadIdx.x < kTile) {
    const int64_t q = q0 + threadIdx.x;
    lse_s[threadIdx.x] = q < T ? lse[row_base + q] : 0.0f;
    d_s[threadIdx.x] = q < T ? Dd[row_base + q] : 0.0f;
  }
}

// One block per key tile: dK and dV of its 32 keys.
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* Dd,
                          Dims D) {
  constexpr int P = HS + 1, NC = HS / 32;
  TRIDENT_DYNAMIC_SHARED(float, smem);
  float* Ks = smem;
  float* Vs = Ks + kTile * P;
  float* Qs = Vs + kTile * P;
  float* dOs = Qs + kTile * P;
  float* Ps = dOs + kTile * P;
  float* dSs = Ps + kTile * kScoreStride;
  float* lse_s = dSs + kTile * kScoreStride;
  float* d_s = lse_s + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_tiles = gridDim.x;
  const int64_t kt = blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t k0 = kt * kTile, ld = 3 * D.C;
  const T* base = qkv + b * D.T * ld + h * D.hs;
  const T* dbase = dout + b * D.T * D.C + h * D.hs;
  load_tile<T, HS>(Ks, base + D.C, ld, k0, D.T, D.hs);
  load_tile<T, HS>(Vs, base + 2 * D.C, ld, k0, D.T, D.hs);

  float dk[kRowsPerWarp][NC], dv[kRowsPerWarp][NC];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) dk[r][c] = dv[r][c] = 0.0f;
  }
  for (int64_t qt = kt; qt < n_tiles; ++qt) {
    const int64_t q0 = qt * kTile;
    __syncthreads();
    load_tile<T, HS>(Qs, base, ld, q0, D.T, D.hs);
    load_tile<T, HS>(dOs, dbase, D.C, q0, D.T, D.hs);
    load_row_stats(lse_s, d_s, lse, Dd, bh * D.T, q0, D.T);
    __syncthreads();
    // Score tile: rows are queries i, columns keys j = lane.
    const int64_t key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = warp + kWarps * r;
      const int64_t q = q0 + i;
      const bool valid = q < D.T && key < D.T && key <= q;
      float p = 0.0f, ds = 0.0f;
      if (valid) {
        const float s = dot_rows<HS>(Qs + i * P, Ks + lane * P) * D.scale;
        p = expf(s - lse_s[i]);
        const float dp = dot_rows<HS>(dOs + i * P, Vs + lane * P);
        ds = p * (dp - d_s[i]);
      }
      Ps[i * kScoreStride + lane] = p;
      dSs[i * kScoreStride + lane] = ds;
    }
    __syncthreads();  // accumulation reads every row
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int j = warp + kWarps * r;
      for (int i = 0; i < kTile; ++i) {
        const float p = Ps[i * kScoreStride + j], ds = dSs[i * kScoreStride + j];
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          dv[r][c] += p * dOs[i * P + lane + 32 * c];
          dk[r][c] += ds * Qs[i * P + lane + 32 * c];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t key = k0 + warp + kWarps * r;
    if (key >= D.T) continue;
    T* row = dqkv + (b * D.T + key) * ld + h * D.hs;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D.hs) {
        row[D.C + d] = from_float<T>(dk[r][c] * D.scale);
        row[2 * D.C + d] = from_float<T>(dv[r][c]);
      }
    }
  }
}

// One block per query tile: dQ of its 32 queries.
template <typename T, int HS>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* Dd,
                        Dims D) {
  constexpr int P = HS + 1, NC = HS / 32;
  TRIDENT_DYNAMIC_SHARED(float, smem);
  float* Qs = smem;
  float* dOs = Qs + kTile * P;
  float* Ks = dOs + kTile * P;
  float* Vs = Ks + kTile * P;
  float* dSs = Vs + kTile * P;
  float* lse_s = dSs + kTile * kScoreStride;
  float* d_s = lse_s + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_tiles = gridDim.x;
  const int64_t qt = n_tiles - 1 - blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t q0 = qt * kTile, ld = 3 * D.C;
  const T* base = qkv + b * D.T * ld + h * D.hs;
  load_tile<T, HS>(Qs, base, ld, q0, D.T, D.hs);
  load_tile<T, HS>(dOs, dout + b * D.T * D.C + h * D.hs, D.C, q0, D.T, D.hs);
  load_row_stats(lse_s, d_s, lse, Dd, bh * D.T, q0, D.T);

  float dq[kRowsPerWarp][NC];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) dq[r][c] = 0.0f;
  }
  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();
    load_tile<T, HS>(Ks, base + D.C, ld, k0, D.T, D.hs);
    load_tile<T, HS>(Vs, base + 2 * D.C, ld, k0, D.T, D.hs);
    __syncthreads();
    const int64_t key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = warp + kWarps * r;
      const int64_t q = q0 + i;
      float ds = 0.0f;
      if (q < D.T && key < D.T && key <= q) {
        const float s = dot_rows<HS>(Qs + i * P, Ks + lane * P) * D.scale;
        const float p = expf(s - lse_s[i]);
        ds = p * (dot_rows<HS>(dOs + i * P, Vs + lane * P) - d_s[i]);
      }
      dSs[i * kScoreStride + lane] = ds;
    }
    __syncwarp();  // a warp reads only its own rows of dS
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = warp + kWarps * r;
      for (int j = 0; j < kTile; ++j) {
        const float ds = dSs[i * kScoreStride + j];
#pragma unroll
        for (int c = 0; c < NC; ++c) dq[r][c] += ds * Ks[j * P + lane + 32 * c];
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t q = q0 + warp + kWarps * r;
    if (q >= D.T) continue;
    T* row = dqkv + (b * D.T + q) * ld + h * D.hs;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      if (d < D.hs) row[d] = from_float<T>(dq[r][c] * D.scale);
    }
  }
}

template <int HS>
constexpr size_t forward_smem() {
  return (3 * kTile * (HS + 1) + kTile * kScoreStride) * sizeof(float);
}
template <int HS>
constexpr size_t dkdv_smem() {
  return (4 * kTile * (HS + 1) + 2 * kTile * kScoreStride + 2 * kTile) * sizeof(float);
}
template <int HS>
constexpr size_t dq_smem() {
  return (4 * kTile * (HS + 1) + kTile * kScoreStride + 2 * kTile) * sizeof(float);
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  detail::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)),
                     "attention (shared memory limit)");
}

Dims make_dims(const char* who, int64_t B, int64_t T, int64_t C, int64_t NH) {
  if (NH <= 0 || C % NH != 0) {
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(NH) +
                                " heads do not divide the channel count C = " + std::to_string(C));
  }
  const int64_t hs = C / NH;
  if (hs > 128) {
    throw std::invalid_argument(std::string(who) + ": head size " + std::to_string(hs) +
                                " exceeds the 128 the CUDA attention kernel supports; use more "
                                "heads");
  }
  if (B * NH > 65535) {
    throw std::invalid_argument(std::string(who) + ": batch x heads = " + std::to_string(B * NH) +
                                " exceeds 65535; use a smaller micro-batch");
  }
  return Dims{B, T, C, NH, hs, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)))};
}

template <typename T, int HS>
void forward_hs(T* out, float* lse, const T* qkv, const Dims& D, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((D.T + kTile - 1) / kTile),
                  static_cast<unsigned>(D.B * D.NH));
  allow_smem(attention_forward_kernel<T, HS>, forward_smem<HS>());
  TRIDENT_LAUNCH((attention_forward_kernel<T, HS>), grid, kThreads, forward_smem<HS>(), stream)
  (out, lse, qkv, D);
  check_launch("attention_forward_kernel");
}

template <typename T, int HS>
void backward_hs(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* Dd,
                 const Dims& D, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((D.T + kTile - 1) / kTile),
                  static_cast<unsigned>(D.B * D.NH));
  allow_smem(attention_dkdv_kernel<T, HS>, dkdv_smem<HS>());
  TRIDENT_LAUNCH((attention_dkdv_kernel<T, HS>), grid, kThreads, dkdv_smem<HS>(), stream)
  (dqkv, dout, qkv, lse, Dd, D);
  check_launch("attention_dkdv_kernel");
  allow_smem(attention_dq_kernel<T, HS>, dq_smem<HS>());
  TRIDENT_LAUNCH((attention_dq_kernel<T, HS>), grid, kThreads, dq_smem<HS>(), stream)
  (dqkv, dout, qkv, lse, Dd, D);
  check_launch("attention_dq_kernel");
}

}  // namespace

AttentionKernelCounts attention_kernel_counts() {
  return {g_fa2_forward.load(), g_fa2_backward.load(), g_simt_forward.load(),
          g_simt_backward.load()};
}

size_t attention_saved_bytes(ScalarType t, int64_t B, int64_t T, int64_t C, int64_t NH) {
  (void)t;
  (void)C;
  return lse_bytes(B, T, NH);
}

void attention_forward(ScalarType t, void* out, void* saved, const void* qkv, int64_t B, int64_t T_,
                       int64_t C, int64_t NH, cudaStream_t stream) {
  const Dims D = make_dims("attention_forward", B, T_, C, NH);
  if (B == 0 || T_ == 0 || C == 0) return;
  float* lse = static_cast<float*>(saved);
  if (t == ScalarType::BF16 && detail::attention_fa2_supported(D, out, qkv, out)) {
    detail::attention_fa2_forward(static_cast<__nv_bfloat16*>(out), lse,
                                  static_cast<const __nv_bfloat16*>(qkv), D, stream);
    ++g_fa2_forward;
    return;
  }
  ++g_simt_forward;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "attention", {
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(qkv);
    if (D.hs <= 32) {
      forward_hs<T, 32>(o, lse, x, D, stream);
    } else if (D.hs <= 64) {
      forward_hs<T, 64>(o, lse, x, D, stream);
    } else {
      forward_hs<T, 128>(o, lse, x, D, stream);
    }
  });
}

void attention_backward(ScalarType t, void* dqkv, const void* dout, const void* qkv,
                        const void* out, const void* saved, int64_t B, int64_t T_, int64_t C,
                        int64_t NH, Scratch& scratch, cudaStream_t stream) {
  const Dims D = make_dims("attention_backward", B, T_, C, NH);
  if (B == 0 || T_ == 0 || C == 0) return;
  const float* lse = static_cast<const float*>(saved);
  float* Dd = scratch.get_as<float>(B * NH * T_);
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "attention_backward", {
    T* dx = static_cast<T*>(dqkv);
    const T* dy = static_cast<const T*>(dout);
    const T* x = static_cast<const T*>(qkv);
    const bool tensor_cores = std::is_same<T, __nv_bfloat16>::value &&
                              !deterministic_backward_requested() &&
                              detail::attention_fa2_supported(D, dx, dy, x);
    float* dq_acc = tensor_cores ? scratch.get_as<float>(B * T_ * C) : nullptr;
    const unsigned rows_grid = detail::grid_for(B * T_ * NH, kThreads / 32, int64_t{1} << 16);
    TRIDENT_LAUNCH(attention_rowdot_kernel<T>, rows_grid, kThreads, 0, stream)
    (Dd, dq_acc, dy, static_cast<const T*>(out), D);
    check_launch("attention_rowdot_kernel");
    if (tensor_cores) {
      detail::attention_fa2_backward(reinterpret_cast<__nv_bfloat16*>(dx), dq_acc,
                                     reinterpret_cast<const __nv_bfloat16*>(dy),
                                     reinterpret_cast<const __nv_bfloat16*>(x), lse, Dd, D, stream);
      ++g_fa2_backward;
      break;
    }
    ++g_simt_backward;
    if (D.hs <= 32) {
      backward_hs<T, 32>(dx, dy, x, lse, Dd, D, stream);
    } else if (D.hs <= 64) {
      backward_hs<T, 64>(dx, dy, x, lse, Dd, D, stream);
    } else {
      backward_hs<T, 128>(dx, dy, x, lse, Dd, D, stream);
    }
  });
}

}  // namespace trident::kernels::cuda
