// Private interface between attention.cu (the launcher the backend calls) and attention_wmma.cu
// (the tensor-core FlashAttention-2 kernels for bf16 storage and head sizes 64 and 128). Shapes
// and the saved buffer are those of trident/kernels/cuda/attention.hpp.
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
bool attention_wmma_supported(const AttentionDims& D, const void* a, const void* b, const void* c);

// out (B, T, C), lse (B, NH, T) fp32; backward reads out itself for the row dot D = dO . O.
void attention_wmma_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv,
                            const AttentionDims& D, cudaStream_t stream);

}  // namespace trident::kernels::cuda::detail
