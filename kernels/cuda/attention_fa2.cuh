// Private interface between attention.cu (the launcher the backend calls) and the
// FlashAttention-2 tensor-core kernels on mma.sync for bf16 storage and head sizes 64 and 128
// (attention_fa2_fwd.cu, attention_fa2_bwd.cu): the shapes they take and which calls they take.
// Shapes and the saved buffer are those of trident/kernels/cuda/attention.hpp.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cp_async.cuh"

namespace trident::kernels::cuda::detail {

struct AttentionDims {
  int64_t B, T, C, NH, hs;
  float scale;  // 1 / sqrt(hs)
};

// Whether the tensor-core kernels take this call: head size 64 or 128 and every pointer 16-byte
// aligned (the tiles move in 16-byte vectors). bf16 storage is the caller's check.
inline bool attention_fa2_supported(const AttentionDims& D, const void* a, const void* b,
                                    const void* c) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (D.hs == 64 || D.hs == 128) && aligned(a) && aligned(b) && aligned(c);
}

// 8 bf16 moved as one 16-byte access.
struct alignas(16) Pack8 {
  uint32_t w[4];
};

// Issues the copies of rows [row0, row0 + Rows) of a (T, HS) bf16 slab at `base` (row stride `ld`
// elements) into a shared-memory tile with row stride LD, 16 bytes per cp.async, by the block's
// Threads threads; they land at the caller's cp_async_wait. Rows past T are zeroed with plain
// stores. 16-byte alignment: attention_fa2_supported.
template <int HS, int LD, int Rows, int Threads>
__device__ __forceinline__ void load_tile_async(__nv_bfloat16* tile, const __nv_bfloat16* base,
                                                int64_t ld, int64_t row0, int64_t T) {
  constexpr int packs = HS / 8;
  for (int idx = threadIdx.x; idx < Rows * packs; idx += Threads) {
    const int r = idx / packs, c = idx % packs * 8;
    const int64_t row = row0 + r;
    if (row < T) {
      async::cp_async_16(tile + r * LD + c, base + row * ld + c);
    } else {
      *reinterpret_cast<Pack8*>(tile + r * LD + c) = Pack8{{0u, 0u, 0u, 0u}};
    }
  }
}

}  // namespace trident::kernels::cuda::detail
