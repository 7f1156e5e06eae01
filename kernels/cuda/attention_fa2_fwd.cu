// Causal self-attention forward on tensor cores, FlashAttention-2 style, with the mma.sync
// primitives of mma_sync.cuh (fragments in registers with the PTX-documented layouts). bf16
// storage, head size HS = 64 or 128. Shapes as trident/kernels/cuda/attention.hpp: qkv (B, T, 3C)
// with q, k, v of head h at columns h*hs, C + h*hs, 2C + h*hs; out (B, T, C); lse (B, NH, T) fp32.
//
// One block per (query tile of 64 rows, b*h), longest rows first; 4 warps, warp w owns query rows
// 16w..16w+15 of the tile. Q, K, V tiles are bf16 in shared memory, rows padded to HS + 8
// elements (16-byte aligned rows whose 8 ldmatrix addresses fall in distinct bank groups). Each
// warp loads its Q rows once as A fragments (ldmatrix_x4) and keeps them in registers. For every
// key tile of 64 up to the diagonal (16-key groups past the warp's last row skipped):
//   S = Q K^T        8 n8 accumulator tiles (16 x 64 f32, 32 registers a lane): HS/16 k-steps of
//                    ldmatrix_x4 on K rows (B fragments of two n8 tiles) + 2 mma each
//   mask             key > query -> -inf (only on the diagonal tile: earlier tiles are full;
//                    keys past T only occur in the last tile and are all > every query < T)
//   online softmax   each lane holds 2 rows (g, g + 8) x 16 columns; row max over the lane,
//                    then over its 4-lane group (2 shuffles); in log2 space with the scale folded
//                    in: p = exp2(s * scale*log2(e) - m * scale*log2(e)) (one FMA + exp2), O and
//                    the lane's partial row sum l rescaled by exp2((m_old - m_new) * ...)
//   P -> A           the accumulators of n8 tiles 2j and 2j+1, packed pairwise to bf16, are the
//                    A fragment of keys 16j..16j+15 (no shared memory)
//   O += P V         HS/8 n8 accumulator tiles (16 x HS f32) in registers: ldmatrix_x4_trans on V
//                    rows (B fragments of two n8 tiles) + 2 mma per 16 keys per 16 columns
// After the last tile the 4 lanes of a group sum their partial l, O / l is rounded to bf16 and
// staged in the warp's own Q rows of shared memory, then written to out in 16-byte vectors; lse
// = m * scale + log(l). K and V are double-buffered with cp.async (cp_async.cuh): the copies of
// key tile kt + 1 are issued before tile kt is computed, so the load overlaps the tile's work;
// two block barriers per tile (copies landed; buffer free for the copies of tile kt + 2).
#include <cmath>

#include "attention_fa2_fwd.cuh"
#include "common.cuh"
#include "cp_async.cuh"
#include "mma_sync.cuh"

namespace trident::kernels::cuda::detail {
namespace {

using bf16 = __nv_bfloat16;
using mma::ldmatrix_x4;
using mma::ldmatrix_x4_trans;
using mma::mma_m16n8k16;
using mma::pack_bf16;

constexpr int kRows = 64;  // queries per block and keys per tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = 32 * kWarps;

template <int HS>
struct Fa2ForwardSmem {
  static constexpr int ld = HS + 8;  // bf16 rows of Q, K, V
  static constexpr size_t tile = sizeof(bf16) * kRows * ld;
  // Q, then two buffers of K and V (key tiles kt with kt % 2 == 0 and 1).
  static constexpr size_t q = 0, kv = q + tile;
  __host__ __device__ static constexpr size_t k(int buf) { return kv + 2 * tile * buf; }
  __host__ __device__ static constexpr size_t v(int buf) { return k(buf) + tile; }
  static constexpr size_t bytes = kv + 4 * tile;
};

template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_forward_fa2_kernel(bf16* out, float* lse, const bf16* qkv, AttentionDims D) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = Fa2ForwardSmem<HS>;
  constexpr int ld = L::ld;
  constexpr int NK = HS / 16;  // k16 steps of Q K^T
  constexpr int NO = HS / 8;   // n8 output tiles
  TRIDENT_DYNAMIC_SHARED(float, smem_f);
  char* smem = reinterpret_cast<char*>(smem_f);
  bf16* Qs = reinterpret_cast<bf16*>(smem + L::q);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  const int64_t qt = gridDim.x - 1 - blockIdx.x;  // longest rows first
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t q0 = qt * kRows, row_stride = 3 * D.C;
  const bf16* base = qkv + b * D.T * row_stride + h * D.hs;
  // Group 0: Q and key tile 0.
  load_tile_async<HS, ld, kRows, kThreads>(Qs, base, row_stride, q0, D.T);
  load_tile_async<HS, ld, kRows, kThreads>(reinterpret_cast<bf16*>(smem + L::k(0)), base + D.C,
                                           row_stride, 0, D.T);
  load_tile_async<HS, ld, kRows, kThreads>(reinterpret_cast<bf16*>(smem + L::v(0)), base + 2 * D.C,
                                           row_stride, 0, D.T);
  async::cp_async_commit();

  const int64_t first_row = q0 + warp * 16, last_row = first_row + 15;
  const int64_t row_g = first_row + g, row_g8 = row_g + 8;  // this lane's two rows
  const float scale_log2 = D.scale * 1.4426950408889634f;   // log2(e)
  uint32_t qf[NK][4];
  float o[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max of the raw scores of rows g, g + 8
  float l0 = 0.0f, l1 = 0.0f;            // this lane's part of the rows' exp sums

  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kRows;
    const int buf = static_cast<int>(kt % 2);
    const bf16* Ks = reinterpret_cast<const bf16*>(smem + L::k(buf));
    const bf16* Vs = reinterpret_cast<const bf16*>(smem + L::v(buf));
    if (kt < qt) {  // the next tile into the other buffer (free: the barrier ending kt - 1)
      const int64_t n0 = k0 + kRows;
      load_tile_async<HS, ld, kRows, kThreads>(reinterpret_cast<bf16*>(smem + L::k(1 - buf)),
                                               base + D.C, row_stride, n0, D.T);
      load_tile_async<HS, ld, kRows, kThreads>(reinterpret_cast<bf16*>(smem + L::v(1 - buf)),
                                               base + 2 * D.C, row_stride, n0, D.T);
      async::cp_async_commit();
      async::cp_async_wait<1>();  // this tile's copies landed, the next tile's in flight
    } else {
      async::cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies (and zero rows) of this tile visible
    if (kt == 0) {
#pragma unroll
      for (int kk = 0; kk < NK; ++kk)
        ldmatrix_x4(qf[kk], Qs + (warp * 16 + lane % 16) * ld + kk * 16 + 8 * (lane / 16));
    }
    // 16-key groups with a key at or before the warp's last row (at least one: k0 <= q0).
    const int groups = static_cast<int>(min(int64_t{4}, (last_row - k0) / 16 + 1));
    // Every loop over fragment arrays has a constant trip count (unrolled, so the arrays stay in
    // registers); groups past the warp's last row are skipped by a warp-uniform branch.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int j2 = 0; j2 < 4; ++j2) {
      if (j2 >= groups) break;
      // Matrices: keys 16j2 + 0..7 / dims 0..7, keys 0..7 / dims 8..15, keys 8..15 / dims 0..7,
      // keys 8..15 / dims 8..15 (of the k-step): B fragments of n8 tiles 2j2 and 2j2 + 1.
      const bf16* krow = Ks + (j2 * 16 + lane % 8 + 8 * (lane / 16)) * ld + 8 * ((lane / 8) % 2);
#pragma unroll
      for (int kk = 0; kk < NK; ++kk) {
        uint32_t kf[4];
        ldmatrix_x4(kf, krow + kk * 16);
        const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
        mma_m16n8k16(s[2 * j2], qf[kk], b0);
        mma_m16n8k16(s[2 * j2 + 1], qf[kk], b1);
      }
    }
    // Skipped groups (keys past the warp's last row) occur only here, masked with the rest.
    if (k0 + kRows - 1 > first_row) {  // the diagonal tile: mask keys past each row
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t key = k0 + j * 8 + 2 * t;
        if (key > row_g) s[j][0] = -INFINITY;
        if (key + 1 > row_g) s[j][1] = -INFINITY;
        if (key > row_g8) s[j][2] = -INFINITY;
        if (key + 1 > row_g8) s[j][3] = -INFINITY;
      }
    }
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // Every row has a valid key in every visited tile (key k0 <= q0 <= row), so mx is finite.
    const float corr0 = exp2f((m0 - mx0) * scale_log2), corr1 = exp2f((m1 - mx1) * scale_log2);
    m0 = mx0;
    m1 = mx1;
    const float off0 = mx0 * scale_log2, off1 = mx1 * scale_log2;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      s[j][0] = exp2f(fmaf(s[j][0], scale_log2, -off0));
      s[j][1] = exp2f(fmaf(s[j][1], scale_log2, -off0));
      s[j][2] = exp2f(fmaf(s[j][2], scale_log2, -off1));
      s[j][3] = exp2f(fmaf(s[j][3], scale_log2, -off1));
      sum0 += s[j][0] + s[j][1];
      sum1 += s[j][2] + s[j][3];
    }
    l0 = l0 * corr0 + sum0;
    l1 = l1 * corr1 + sum1;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      o[n][0] *= corr0;
      o[n][1] *= corr0;
      o[n][2] *= corr1;
      o[n][3] *= corr1;
    }
#pragma unroll
    for (int j2 = 0; j2 < 4; ++j2) {
      if (j2 >= groups) break;
      const uint32_t pf[4] = {pack_bf16(s[2 * j2][0], s[2 * j2][1]),
                              pack_bf16(s[2 * j2][2], s[2 * j2][3]),
                              pack_bf16(s[2 * j2 + 1][0], s[2 * j2 + 1][1]),
                              pack_bf16(s[2 * j2 + 1][2], s[2 * j2 + 1][3])};
      // Matrices: keys 0..7 / dims 0..7, keys 8..15 / dims 0..7, keys 0..7 / dims 8..15,
      // keys 8..15 / dims 8..15 (of the 16 output columns), transposed: B of n8 tiles 2n, 2n+1.
      const bf16* vrow = Vs + (j2 * 16 + lane % 8 + 8 * ((lane / 8) % 2)) * ld + 8 * (lane / 16);
#pragma unroll
      for (int n2 = 0; n2 < NO / 2; ++n2) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, vrow + n2 * 16);
        const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
        mma_m16n8k16(o[2 * n2], pf, b0);
        mma_m16n8k16(o[2 * n2 + 1], pf, b1);
      }
    }
    __syncthreads();  // K, V of this buffer fully read before tile kt + 2's copies into it
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (t == 0) {
    if (row_g < D.T) lse[bh * D.T + row_g] = m0 * D.scale + logf(l0);
    if (row_g8 < D.T) lse[bh * D.T + row_g8] = m1 * D.scale + logf(l1);
  }
  // O / l as bf16 into the warp's own Q rows (read only by this warp, at kt == 0), then out.
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  bf16* Ow = Qs + warp * 16 * ld;
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    *reinterpret_cast<uint32_t*>(Ow + g * ld + n * 8 + 2 * t) =
        pack_bf16(o[n][0] * inv0, o[n][1] * inv0);
    *reinterpret_cast<uint32_t*>(Ow + (g + 8) * ld + n * 8 + 2 * t) =
        pack_bf16(o[n][2] * inv1, o[n][3] * inv1);
  }
  __syncwarp();
  constexpr int packs = HS / 8;
  for (int idx = lane; idx < 16 * packs; idx += 32) {
    const int r = idx / packs, c = idx % packs * 8;
    const int64_t row = first_row + r;
    if (row < D.T) {
      *reinterpret_cast<Pack8*>(out + (b * D.T + row) * D.C + h * D.hs + c) =
          *reinterpret_cast<const Pack8*>(Ow + r * ld + c);
    }
  }
#else
  __trap();  // launched only on sm_80 and newer (bf16 mma.sync)
#endif
}

template <int HS>
void forward_hs(bf16* out, float* lse, const bf16* qkv, const AttentionDims& D,
                cudaStream_t stream) {
  constexpr size_t smem = Fa2ForwardSmem<HS>::bytes;
  check_cuda(
      cudaFuncSetAttribute(attention_forward_fa2_kernel<HS>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
      "attention (FA2 forward, shared memory limit)");
  const dim3 grid(static_cast<unsigned>((D.T + kRows - 1) / kRows),
                  static_cast<unsigned>(D.B * D.NH));
  TRIDENT_LAUNCH(attention_forward_fa2_kernel<HS>, grid, kThreads, smem, stream)(out, lse, qkv, D);
  check_launch("attention_forward_fa2_kernel");
}

}  // namespace

void attention_fa2_forward(bf16* out, float* lse, const bf16* qkv, const AttentionDims& D,
                           cudaStream_t stream) {
  if (D.hs == 64) {
    forward_hs<64>(out, lse, qkv, D, stream);
  } else {
    forward_hs<128>(out, lse, qkv, D, stream);
  }
}

}  // namespace trident::kernels::cuda::detail
