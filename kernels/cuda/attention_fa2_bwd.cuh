// Private interface between attention.cu (the launcher the backend calls) and
// attention_fa2_bwd.cu (the FlashAttention-2 backward on mma.sync tensor cores for bf16 storage,
// head sizes 64 and 128). Shapes as trident/kernels/cuda/attention.hpp; AttentionDims and the
// support check (attention_fa2_supported: head size and 16-byte alignment) are shared with the
// tensor-core forward.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "attention_fa2.cuh"

namespace trident::kernels::cuda::detail {

// dqkv (B, T, 3C) from dout (B, T, C), qkv, lse (B, NH, T) of the forward and Dd (B, NH, T) =
// dO . O per row. dq_acc (B, T, C) fp32 must be zero on entry (attention.cu's rowdot kernel
// zeroes it): the backward kernel accumulates dQ into it with atomicAdd, then a second kernel
// writes dQ = scale dq_acc into dqkv. Two launches.
void attention_fa2_backward(__nv_bfloat16* dqkv, float* dq_acc, const __nv_bfloat16* dout,
                            const __nv_bfloat16* qkv, const float* lse, const float* Dd,
                            const AttentionDims& D, cudaStream_t stream);

}  // namespace trident::kernels::cuda::detail
