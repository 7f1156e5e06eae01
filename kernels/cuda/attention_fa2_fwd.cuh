// Private interface between attention.cu (the launcher the backend calls) and
// attention_fa2_fwd.cu (the FlashAttention-2 forward on mma.sync tensor cores for bf16 storage,
// head sizes 64 and 128). Shapes as trident/kernels/cuda/attention.hpp; AttentionDims and the
// support check (attention_fa2_supported: head size and 16-byte alignment) are shared with the
// other tensor-core kernels.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "attention_fa2.cuh"

namespace trident::kernels::cuda::detail {

// out (B, T, C) bf16, lse (B, NH, T) fp32 (natural log of the row's softmax denominator of the
// scaled scores, as the other forwards save it). One launch.
void attention_fa2_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* qkv,
                           const AttentionDims& D, cudaStream_t stream);

}  // namespace trident::kernels::cuda::detail
