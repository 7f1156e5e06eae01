// Private interface between attention.cu (the launcher the backend calls) and the
// FlashAttention-2 tensor-core kernels on mma.sync for bf16 storage and head sizes 64 and 128
// (attention_fa2_fwd.cu, attention_fa2_bwd.cu): the shapes they take and which calls they take.
// Shapes and the saved buffer are those of trident/kernels/cuda/attention.hpp.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

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

}  // namespace trident::kernels::cuda::detail
