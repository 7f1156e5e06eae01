// Causal self-attention on tensor cores (FlashAttention-2), bf16 storage, head size 64 or 128,
// through nvcuda::wmma bf16 m16n16k16 fragments with fp32 accumulators. Shapes as
// trident/kernels/cuda/attention.hpp: qkv (B, T, 3C), out (B, T, C), lse (B, NH, T) fp32.
// A block is 4 warps (128 threads) and owns a tile of 64 rows; a warp owns 16 of them. Q, K, V
// tiles are bf16 in shared memory with rows padded to HS + 8 elements; everything that needs
// to know which (row, col) an element is (masking, softmax, scaling rows) goes through shared
// memory with store_matrix_sync, because a fragment's element-to-lane mapping is unspecified.
//
// Forward, one block per (query tile of 64, b*h), longest rows first: for every key tile up to
// the diagonal (fully masked tiles are never visited), each warp computes S = Q K^T for its 16
// rows on tensor cores (skipping 16-key sub-tiles past its last row), stores S (fp32) to shared
// memory, where lane pairs own a row: scale, mask, online softmax (running max m and sum l in
// fp32), P rounded to bf16, and the warp's fp32 output rows rescaled by exp(m_old - m_new); then
// O += P V on tensor cores with O loaded as an accumulator from shared memory and stored back.
// Writes O / l (to out, which backward reads for D) and lse = m + log l.
//
// The backward is attention_fa2_bwd.cu's (mma.sync); the wmma backward that was here is gone.
#include <mma.h>

#include <cmath>

#include "attention_wmma.cuh"
#include "common.cuh"

namespace trident::kernels::cuda::detail {
namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kRows = 64;  // queries (forward) or keys (backward) per block
constexpr int kWarps = kRows / 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kLdS = kRows + 4;  // fp32 score tiles: 16 x 64 per warp
constexpr int kLdP = kRows + 8;  // bf16 probability / dS tiles

constexpr size_t align128(size_t x) {
  return (x + 127) / 128 * 128;
}

// Shared memory of the forward kernel, byte offsets (each 128-byte aligned: wmma needs 32).
template <int HS>
struct ForwardSmem {
  static constexpr int ldh = HS + 8;  // bf16 Q, K, V rows
  static constexpr int ldo = HS + 4;  // fp32 output rows
  static constexpr size_t tile = align128(sizeof(bf16) * kRows * ldh);
  static constexpr size_t q = 0, k = q + tile, v = k + tile;
  static constexpr size_t s = v + tile;  // fp32 S, 16 rows per warp
  static constexpr size_t p = s + align128(sizeof(float) * kRows * kLdS);
  static constexpr size_t o = p + align128(sizeof(bf16) * kRows * kLdP);
  static constexpr size_t bytes = o + align128(sizeof(float) * kRows * ldo);
};

__device__ __forceinline__ int min_int(int64_t a, int64_t b) {
  return static_cast<int>(a < b ? a : b);
}

// 8 bf16 moved as one 16-byte access.
struct alignas(16) Pack8 {
  uint32_t w[4];
};

// Rows [row0, row0 + 64) of a (T, HS) slab at `base` with row stride `ld` elements into a bf16
// tile with row stride LD; rows past T are zero. base and ld keep 16-byte alignment (checked by
// attention_wmma_supported).
template <int HS, int LD>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, int64_t ld, int64_t row0,
                                          int64_t T) {
  constexpr int packs = HS / 8;
  for (int idx = threadIdx.x; idx < kRows * packs; idx += kThreads) {
    const int r = idx / packs, c = idx % packs * 8;
    const int64_t row = row0 + r;
    Pack8 v{{0u, 0u, 0u, 0u}};
    if (row < T) v = *reinterpret_cast<const Pack8*>(base + row * ld + c);
    *reinterpret_cast<Pack8*>(tile + r * LD + c) = v;
  }
}

template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_forward_wmma_kernel(bf16* out, float* lse, const bf16* qkv, AttentionDims D) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using L = ForwardSmem<HS>;
  constexpr int ldh = L::ldh, ldo = L::ldo, NF = HS / 16;
  TRIDENT_DYNAMIC_SHARED(float, smem_f);
  char* smem = reinterpret_cast<char*>(smem_f);
  bf16* Qs = reinterpret_cast<bf16*>(smem + L::q);
  bf16* Ks = reinterpret_cast<bf16*>(smem + L::k);
  bf16* Vs = reinterpret_cast<bf16*>(smem + L::v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* Sw = reinterpret_cast<float*>(smem + L::s) + warp * 16 * kLdS;
  bf16* Pw = reinterpret_cast<bf16*>(smem + L::p) + warp * 16 * kLdP;
  float* Ow = reinterpret_cast<float*>(smem + L::o) + warp * 16 * ldo;
  const int64_t qt = gridDim.x - 1 - blockIdx.x;  // longest rows first
  const int64_t bh = blockIdx.y, b = bh / D.NH, h = bh % D.NH;
  const int64_t q0 = qt * kRows, ld = 3 * D.C;
  const bf16* base = qkv + b * D.T * ld + h * D.hs;
  load_tile<HS, ldh>(Qs, base, ld, q0, D.T);

  // Lanes 2r and 2r+1 own row r of the warp's 16: columns [half * 32, half * 32 + 32) of a score
  // tile and [half * HS/2, (half + 1) * HS/2) of the output rows.
  const int r = lane / 2, half = lane % 2;
  const int64_t q = q0 + warp * 16 + r;
  float m = -INFINITY, l = 0.0f;
  for (int d = half * (HS / 2); d < (half + 1) * (HS / 2); ++d) Ow[r * ldo + d] = 0.0f;
  const int64_t last_row = q0 + warp * 16 + 15;
  FragA qf[NF];  // the warp's 16 query rows, loaded once (after the first barrier)
  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kRows;
    __syncthreads();  // the previous K, V fully used
    load_tile<HS, ldh>(Ks, base + D.C, ld, k0, D.T);
    load_tile<HS, ldh>(Vs, base + 2 * D.C, ld, k0, D.T);
    __syncthreads();
    // 16-key sub-tiles with a key at or before the warp's last row (at least one: k0 <= q0).
    const int nj = min_int(kWarps, (last_row - k0) / 16 + 1);
    if (kt == 0) {
      for (int kk = 0; kk < NF; ++kk)
        wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * ldh + kk * 16, ldh);
    }
    for (int j = 0; j < nj; ++j) {
      FragC s;
      wmma::fill_fragment(s, 0.0f);
      for (int kk = 0; kk < NF; ++kk) {
        FragBT bt;
        wmma::load_matrix_sync(bt, Ks + j * 16 * ldh + kk * 16, ldh);
        wmma::mma_sync(s, qf[kk], bt, s);
      }
      wmma::store_matrix_sync(Sw + j * 16, s, kLdS, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax of row r over this tile's valid keys (key 0 makes the first tile's max
    // finite for every row, rows past T included).
    const int c_end = min_int(half * 32 + 32, nj * 16);
    float tile_max = -INFINITY;
    for (int c = half * 32; c < c_end; ++c) {
      const int64_t key = k0 + c;
      const bool valid = key <= q && key < D.T;
      const float sv = valid ? Sw[r * kLdS + c] * D.scale : -INFINITY;
      Sw[r * kLdS + c] = sv;
      tile_max = fmaxf(tile_max, sv);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    float sum = 0.0f;
    for (int c = half * 32; c < c_end; ++c) {
      const float sv = Sw[r * kLdS + c];
      // The sum takes the bf16-rounded p that the P V product uses, so the weights sum to 1.
      const bf16 p = __float2bfloat16_rn(sv == -INFINITY ? 0.0f : expf(sv - m_new));
      Pw[r * kLdP + c] = p;
      sum += __bfloat162float(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    const float corr = expf(m - m_new);
    l = l * corr + sum;
    m = m_new;
    for (int d = half * (HS / 2); d < (half + 1) * (HS / 2); ++d) Ow[r * ldo + d] *= corr;
    __syncwarp();
    for (int n = 0; n < NF; ++n) {
      FragC o;
      wmma::load_matrix_sync(o, Ow + n * 16, ldo, wmma::mem_row_major);
      for (int j = 0; j < nj; ++j) {
        FragA p;
        FragB v;
        wmma::load_matrix_sync(p, Pw + j * 16, kLdP);
        wmma::load_matrix_sync(v, Vs + j * 16 * ldh + n * 16, ldh);
        wmma::mma_sync(o, p, v, o);
      }
      wmma::store_matrix_sync(Ow + n * 16, o, ldo, wmma::mem_row_major);
    }
    __syncwarp();
  }
  if (half == 0 && q < D.T) lse[bh * D.T + q] = m + logf(l);
  // The warp writes its rows one at a time, lanes on consecutive columns.
  for (int rr = 0; rr < 16; ++rr) {
    const float inv = 1.0f / __shfl_sync(0xffffffffu, l, 2 * rr);
    const int64_t row = q0 + warp * 16 + rr;
    if (row >= D.T) break;
    const int64_t off = (b * D.T + row) * D.C + h * D.hs;
    for (int d = lane; d < HS; d += 32) out[off + d] = __float2bfloat16_rn(Ow[rr * ldo + d] * inv);
  }
#else
  __trap();  // launched only on sm_80 and newer (bf16 tensor cores)
#endif
}

template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)),
             "attention (tensor cores, shared memory limit)");
}

dim3 tile_grid(const AttentionDims& D) {
  return dim3(static_cast<unsigned>((D.T + kRows - 1) / kRows), static_cast<unsigned>(D.B * D.NH));
}

template <int HS>
void forward_hs(bf16* out, float* lse, const bf16* qkv, const AttentionDims& D,
                cudaStream_t stream) {
  constexpr size_t smem = ForwardSmem<HS>::bytes;
  allow_smem(attention_forward_wmma_kernel<HS>, smem);
  TRIDENT_LAUNCH(attention_forward_wmma_kernel<HS>, tile_grid(D), kThreads, smem, stream)
  (out, lse, qkv, D);
  check_launch("attention_forward_wmma_kernel");
}

}  // namespace

bool attention_wmma_supported(const AttentionDims& D, const void* a, const void* b, const void* c) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (D.hs == 64 || D.hs == 128) && aligned(a) && aligned(b) && aligned(c);
}

void attention_wmma_forward(bf16* out, float* lse, const bf16* qkv, const AttentionDims& D,
                            cudaStream_t stream) {
  if (D.hs == 64) {
    forward_hs<64>(out, lse, qkv, D, stream);
  } else {
    forward_hs<128>(out, lse, qkv, D, stream);
  }
}

}  // namespace trident::kernels::cuda::detail
