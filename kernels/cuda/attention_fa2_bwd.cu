// Causal self-attention backward on tensor cores, FlashAttention-2's algorithm with mma.sync
// m16n8k16 (bf16 in, fp32 accumulate) and ldmatrix (mma_sync.cuh), P^T and dS^T kept in
// registers. Shapes as trident/kernels/cuda/attention.hpp: qkv (B, T, 3C), dout and out (B, T, C),
// lse (B, NH, T) fp32 from the forward, D = dO . O (B, NH, T) fp32 and the zeroed fp32 dQ scratch
// dq_acc (B, T, C) from the caller (attention.cu's rowdot kernel writes both); dqkv (B, T, 3C).
// bf16 storage, head size HS = 64 or 128, every pointer 16-byte aligned.
//
// One block per (key tile of 64, b*h), 4 warps; warp w owns keys k0 + 16w .. + 15 (the M of
// every product it issues, so its dK and dV rows never leave its registers). K, V, and per query
// tile Q and dO are bf16 in shared memory, rows padded to HS + 8 elements (a row stride of
// 16 mod 128 bytes: the 8 row addresses of an ldmatrix hit distinct banks). The block walks the
// query tiles of 64 from the diagonal to T; per tile, warp w and each 16-query sub-tile i with a
// pair at or below the diagonal (others are skipped whole):
//   S^T  = K_w Q_i^T     (16 x 16, HS/16 k-steps, 2 n8 tiles)   A = K_w, B = Q_i via ldmatrix
//   dP^T = V_w dO_i^T    (same)                                 A = V_w, B = dO_i
//   P^T  = exp2(S^T scale log2(e) - lse log2(e)), masked (key > query or query >= T -> 0)
//   dS^T = P^T (dP^T - D)
//   dV  += P^T dO_i      (16 x HS, k = the 16 queries)          B = dO_i via ldmatrix.trans
//   dK  += dS^T Q_i                                             B = Q_i via ldmatrix.trans
// P^T and dS^T go from C fragments to A fragments in registers (the m16n8 C layout of two
// adjacent n8 tiles is the m16k16 A layout, rounded to bf16 pairs); dS^T is also stored once to
// shared memory (64 keys x 64 queries) for dQ. After a barrier warp w computes query rows
// q0 + 16w .. + 15 of dQ += dS K over the key sub-tiles at or before them (A = dS^T through
// ldmatrix.trans, B = K through ldmatrix.trans) and adds them to dq_acc with fp32 atomicAdd.
// When HS = 64 the warp's K and V A fragments stay in registers for the whole loop; at 128 they
// are re-read with ldmatrix per sub-tile (holding them and two 16 x 128 fp32 accumulators would
// exceed 255 registers). dK = scale dK and dV leave straight from the accumulators (bf16 pairs).
// A last kernel writes dQ = scale dq_acc as bf16. Five tile products per (query, key) pair, as
// FlashAttention-2; dQ's atomic additions make its last bits depend on block scheduling.
#include <cmath>

#include "attention_fa2_bwd.cuh"
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

constexpr int kKeys = 64;  // keys per block, and queries per tile of the loop
constexpr int kWarps = kKeys / 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kLdS = kKeys + 8;  // bf16 dS^T rows (64 queries + padding)
constexpr float kLog2e = 1.4426950408889634f;

constexpr size_t align128(size_t x) {
  return (x + 127) / 128 * 128;
}

// Shared memory, byte offsets: K, V, two buffers each of Q and dO (the next query tile loads
// while the current one is used), dS^T of the block's 64 keys, lse log2(e) and D of the tile's
// 64 queries.
template <int HS>
struct Fa2BackwardSmem {
  static constexpr int ldh = HS + 8;
  static constexpr size_t tile = align128(sizeof(bf16) * kKeys * ldh);
  static constexpr size_t k = 0, v = k + tile, q = v + tile, dout = q + 2 * tile;
  static constexpr size_t dst = dout + 2 * tile;
  static constexpr size_t stats = dst + align128(sizeof(bf16) * kKeys * kLdS);
  static constexpr size_t bytes = stats + align128(sizeof(float) * 2 * kKeys);
};

// Rows [row0, row0 + 64) of a (T, HS) slab at `base` with row stride `ld` elements into a bf16
// tile with row stride LD; rows past T are zero.
template <int HS, int LD>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, int64_t ld, int64_t row0,
                                          int64_t T) {
  constexpr int packs = HS / 8;
  for (int idx = threadIdx.x; idx < kKeys * packs; idx += kThreads) {
    const int r = idx / packs, c = idx % packs * 8;
    const int64_t row = row0 + r;
    Pack8 v{{0u, 0u, 0u, 0u}};
    if (row < T) v = *reinterpret_cast<const Pack8*>(base + row * ld + c);
    *reinterpret_cast<Pack8*>(tile + r * LD + c) = v;
  }
}

// ldmatrix row addresses. Lane l names row l % 8 of 8 x 8 matrix m = l / 8.
// A fragment (16 x 16 at `p`, row-major, row stride ld): matrices (rows 0-7 | 8-15) x (cols 0-7),
// then cols 8-15: a[0..3] of mma_m16n8k16.
__device__ __forceinline__ const bf16* a_rows(const bf16* p, int ld, int lane) {
  const int m = lane / 8;
  return p + (lane % 8 + (m & 1) * 8) * ld + (m >> 1) * 8;
}
// Two B fragments of X^T for X 16 x 16 at `p` (rows = n, cols = k, row-major): matrices
// (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15); r[0..1] is the B of
// n 0-7, r[2..3] that of n 8-15 (non-transposing ldmatrix). With the transposing ldmatrix the
// same addresses load the A fragment of X^T (rows = X's columns).
__device__ __forceinline__ const bf16* bt_rows(const bf16* p, int ld, int lane) {
  const int m = lane / 8;
  return p + (lane % 8 + (m >> 1) * 8) * ld + (m & 1) * 8;
}
// Two B fragments of X for X 16 (k) x 16 (n) at `p`, row-major (transposing ldmatrix): matrices
// (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15); r[0..1] is the B of
// n 0-7, r[2..3] that of n 8-15.
__device__ __forceinline__ const bf16* b_rows(const bf16* p, int ld, int lane) {
  const int m = lane / 8;
  return p + (lane % 8 + (m & 1) * 8) * ld + (m >> 1) * 8;
}

// acc[2j] += a * (r[0], r[1]), acc[2j+1] += a * (r[2], r[3]): the two n8 tiles of one ldmatrix_x4.
__device__ __forceinline__ void mma_pair(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4],
                                         const uint32_t (&r)[4]) {
  const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
  mma_m16n8k16(c0, a, b0);
  mma_m16n8k16(c1, a, b1);
}

template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_backward_fa2_kernel(bf16* dqkv, float* dq_acc, const bf16* dout, const bf16* qkv,
                                  const float* lse, const float* Dd, AttentionDims D) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = Fa2BackwardSmem<HS>;
  constexpr int ldh = L::ldh, NK = HS / 16, NT = HS / 8;
  constexpr bool kHoldKV = HS <= 64;  // K_w, V_w A fragments in registers for the whole loop
  TRIDENT_DYNAMIC_SHARED(float, smem_f);
  char* smem = reinterpret_cast<char*>(smem_f);
  bf16* Ks = reinterpret_cast<bf16*>(smem + L::k);
  bf16* Vs = reinterpret_cast<bf16*>(smem + L::v);
  bf16* Qbuf = reinterpret_cast<bf16*>(smem + L::q);  // buffer i at Qbuf + i * tile_elems
  bf16* dObuf = reinterpret_cast<bf16*>(smem + L::dout);
  constexpr size_t tile_elems = L::tile / sizeof(bf16);
  bf16* dSt = reinterpret_cast<bf16*>(smem + L::dst);  // 64 keys x 64 queries
  float* lse_s = reinterpret_cast<float*>(smem + L::stats);
  float* d_s = lse_s + kKeys;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, tig = lane % 4;  // mma fragment row group and column pair
  const int64_t n_tiles = gridDim.x, kt = blockIdx.x;
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t k0 = kt * kKeys, ld = 3 * D.C;
  const bf16* base = qkv + b * D.T * ld + h * D.hs;
  const bf16* dbase = dout + b * D.T * D.C + h * D.hs;
  load_tile_async<HS, ldh, kKeys, kThreads>(Qbuf, base, ld, k0,
                                            D.T);  // the first query tile is the diagonal
  load_tile_async<HS, ldh, kKeys, kThreads>(dObuf, dbase, D.C, k0, D.T);
  async::cp_async_commit();
  load_tile<HS, ldh>(Ks, base + D.C, ld, k0, D.T);
  load_tile<HS, ldh>(Vs, base + 2 * D.C, ld, k0, D.T);
  const bf16* Kw = Ks + warp * 16 * ldh;
  const bf16* Vw = Vs + warp * 16 * ldh;
  const float scale_log2 = D.scale * kLog2e;

  uint32_t ka[kHoldKV ? NK : 1][4], va[kHoldKV ? NK : 1][4];
  (void)ka;
  (void)va;
  float dk[NT][4], dv[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.0f;
  }
  const int64_t key_first = k0 + warp * 16;  // the warp's 16 keys
  const int64_t key_lo = key_first + g, key_hi = key_lo + 8;
  for (int64_t qt = kt; qt < n_tiles; ++qt) {
    const int64_t q0 = qt * kKeys;
    const int buf = static_cast<int>((qt - kt) & 1);
    const bf16* Qs = Qbuf + buf * tile_elems;
    const bf16* dOs = dObuf + buf * tile_elems;
    __syncthreads();         // Q, dO, dS^T of the previous tile fully used
    if (qt + 1 < n_tiles) {  // the next tile into the other buffer, while this one is used
      load_tile_async<HS, ldh, kKeys, kThreads>(Qbuf + (buf ^ 1) * tile_elems, base, ld, q0 + kKeys,
                                                D.T);
      load_tile_async<HS, ldh, kKeys, kThreads>(dObuf + (buf ^ 1) * tile_elems, dbase, D.C,
                                                q0 + kKeys, D.T);
      async::cp_async_commit();
      async::cp_async_wait<1>();  // this tile's copies landed, the next tile's in flight
    } else {
      async::cp_async_wait<0>();
    }
    if (threadIdx.x < kKeys) {
      const int64_t qq = q0 + threadIdx.x;
      lse_s[threadIdx.x] = qq < D.T ? lse[bh * D.T + qq] * kLog2e : 0.0f;
      d_s[threadIdx.x] = qq < D.T ? Dd[bh * D.T + qq] : 0.0f;
    }
    __syncthreads();
    if constexpr (kHoldKV) {
      if (qt == kt) {
#pragma unroll
        for (int kk = 0; kk < NK; ++kk) {
          ldmatrix_x4(ka[kk], a_rows(Kw + kk * 16, ldh, lane));
          ldmatrix_x4(va[kk], a_rows(Vw + kk * 16, ldh, lane));
        }
      }
    }
    for (int i = 0; i < kWarps; ++i) {
      // Sub-tile i is fully masked for this warp when its last query precedes the first key.
      if (q0 + i * 16 + 15 < key_first) continue;
      const bf16* Qi = Qs + i * 16 * ldh;
      const bf16* dOi = dOs + i * 16 * ldh;
      float s[2][4] = {}, dp[2][4] = {};
#pragma unroll
      for (int kk = 0; kk < NK; ++kk) {
        uint32_t r[4];
        if constexpr (kHoldKV) {
          ldmatrix_x4(r, bt_rows(Qi + kk * 16, ldh, lane));
          mma_pair(s[0], s[1], ka[kk], r);
          ldmatrix_x4(r, bt_rows(dOi + kk * 16, ldh, lane));
          mma_pair(dp[0], dp[1], va[kk], r);
        } else {
          uint32_t a[4];
          ldmatrix_x4(a, a_rows(Kw + kk * 16, ldh, lane));
          ldmatrix_x4(r, bt_rows(Qi + kk * 16, ldh, lane));
          mma_pair(s[0], s[1], a, r);
          ldmatrix_x4(a, a_rows(Vw + kk * 16, ldh, lane));
          ldmatrix_x4(r, bt_rows(dOi + kk * 16, ldh, lane));
          mma_pair(dp[0], dp[1], a, r);
        }
      }
      // C element e of n8 tile t: key row g (e < 2) or g + 8, query column 8t + 2 tig + e % 2.
      uint32_t pa[4], dsa[4];
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        float p[4], ds[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = i * 16 + t * 8 + 2 * tig + (e & 1);
          const int64_t q = q0 + c, key = e < 2 ? key_lo : key_hi;
          const bool valid = key <= q && q < D.T;
          p[e] = valid ? exp2f(s[t][e] * scale_log2 - lse_s[c]) : 0.0f;
          ds[e] = p[e] * (dp[t][e] - d_s[c]);
        }
        // C (rows g, g + 8) of n8 tile t -> A registers 2t (row g) and 2t + 1 (row g + 8).
        pa[2 * t] = pack_bf16(p[0], p[1]);
        pa[2 * t + 1] = pack_bf16(p[2], p[3]);
        dsa[2 * t] = pack_bf16(ds[0], ds[1]);
        dsa[2 * t + 1] = pack_bf16(ds[2], ds[3]);
        uint32_t* row =
            reinterpret_cast<uint32_t*>(dSt + (warp * 16 + g) * kLdS + i * 16 + t * 8 + 2 * tig);
        row[0] = dsa[2 * t];
        row[8 * kLdS / 2] = dsa[2 * t + 1];
      }
      // A register order is (row g, k 0-7), (row g + 8, k 0-7), (row g, k 8-15), (g + 8, 8-15).
      const uint32_t pA[4] = {pa[0], pa[1], pa[2], pa[3]};
      const uint32_t dsA[4] = {dsa[0], dsa[1], dsa[2], dsa[3]};
#pragma unroll
      for (int n = 0; n < NK; ++n) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, b_rows(dOi + n * 16, ldh, lane));
        mma_pair(dv[2 * n], dv[2 * n + 1], pA, r);
        ldmatrix_x4_trans(r, b_rows(Qi + n * 16, ldh, lane));
        mma_pair(dk[2 * n], dk[2 * n + 1], dsA, r);
      }
    }
    __syncthreads();  // dS^T of every key of the tile written
    // dQ rows q0 + 16 warp .. + 15 += dS K over the key sub-tiles at or before those rows, 64
    // head dimensions at a time.
    const int64_t row0 = q0 + warp * 16;
    if (row0 < D.T) {
      const int64_t reach = (row0 + 15 - k0) / 16 + 1;  // key sub-tiles with a valid pair
      const int nj = reach < kWarps ? static_cast<int>(reach) : kWarps;
#pragma unroll
      for (int nc = 0; nc < HS / 64; ++nc) {
        float acc[8][4] = {};
        for (int j = 0; j < nj; ++j) {
          uint32_t a[4];
          // dS (queries x keys) is dS^T (keys x queries) read transposed.
          ldmatrix_x4_trans(a, bt_rows(dSt + j * 16 * kLdS + warp * 16, kLdS, lane));
#pragma unroll
          for (int n = 0; n < 4; ++n) {
            uint32_t r[4];
            ldmatrix_x4_trans(r, b_rows(Ks + j * 16 * ldh + nc * 64 + n * 16, ldh, lane));
            mma_pair(acc[2 * n], acc[2 * n + 1], a, r);
          }
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int64_t q = row0 + g + 8 * half;
          if (q >= D.T) continue;
          float* dst = dq_acc + (b * D.T + q) * D.C + h * D.hs + nc * 64 + 2 * tig;
#pragma unroll
          for (int t = 0; t < 8; ++t) {
            atomicAdd(dst + t * 8, acc[t][2 * half]);
            atomicAdd(dst + t * 8 + 1, acc[t][2 * half + 1]);
          }
        }
      }
    }
  }
  // dK = scale dS^T Q and dV = P^T dO of the warp's 16 keys, bf16 pairs from the accumulators.
  bf16* krow = dqkv + b * D.T * ld + h * D.hs;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t key = half == 0 ? key_lo : key_hi;
    if (key >= D.T) continue;
    bf16* kdst = krow + key * ld + D.C + 2 * tig;
    bf16* vdst = kdst + D.C;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      *reinterpret_cast<uint32_t*>(kdst + t * 8) =
          pack_bf16(dk[t][2 * half] * D.scale, dk[t][2 * half + 1] * D.scale);
      *reinterpret_cast<uint32_t*>(vdst + t * 8) = pack_bf16(dv[t][2 * half], dv[t][2 * half + 1]);
    }
  }
#else
  __trap();  // launched only on sm_80 and newer (bf16 mma.sync)
#endif
}

// dqkv's q columns = bf16(scale * dq_acc), (B, T, C) -> (B, T, 3C).
__global__ void attention_fa2_dq_convert_kernel(bf16* dqkv, const float* dq_acc, AttentionDims D) {
  const int64_t n = D.B * D.T * D.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bt = i / D.C, c = i % D.C;
    dqkv[bt * 3 * D.C + c] = __float2bfloat16_rn(dq_acc[i] * D.scale);
  }
}

template <int HS>
void backward_hs(bf16* dqkv, float* dq_acc, const bf16* dout, const bf16* qkv, const float* lse,
                 const float* Dd, const AttentionDims& D, cudaStream_t stream) {
  constexpr size_t smem = Fa2BackwardSmem<HS>::bytes;
  check_cuda(
      cudaFuncSetAttribute(attention_backward_fa2_kernel<HS>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
      "attention backward (mma.sync, shared memory limit)");
  const dim3 grid(static_cast<unsigned>((D.T + kKeys - 1) / kKeys),
                  static_cast<unsigned>(D.B * D.NH));
  TRIDENT_LAUNCH(attention_backward_fa2_kernel<HS>, grid, kThreads, smem, stream)
  (dqkv, dq_acc, dout, qkv, lse, Dd, D);
  check_launch("attention_backward_fa2_kernel");
}

}  // namespace

void attention_fa2_backward(bf16* dqkv, float* dq_acc, const bf16* dout, const bf16* qkv,
                            const float* lse, const float* Dd, const AttentionDims& D,
                            cudaStream_t stream) {
  if (D.hs == 64) {
    backward_hs<64>(dqkv, dq_acc, dout, qkv, lse, Dd, D, stream);
  } else {
    backward_hs<128>(dqkv, dq_acc, dout, qkv, lse, Dd, D, stream);
  }
  TRIDENT_LAUNCH(attention_fa2_dq_convert_kernel, grid_for(D.B * D.T * D.C, 256), 256, 0, stream)
  (dqkv, dq_acc, D);
  check_launch("attention_fa2_dq_convert_kernel");
}

}  // namespace trident::kernels::cuda::detail
