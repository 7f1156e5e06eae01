// Grouped-query attention's fused input on the GPU; contract as kernels/cpu/gqa_pack.hpp;
// f32 or bf16 (t).
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void gqa_pack_forward(ScalarType t, void* qkv, const void* q, const void* k, const void* v,
                      int64_t N, int64_t H, int64_t Hkv, int64_t D, cudaStream_t stream);
// dq, dk, dv (overwrites all three); each dk, dv element sums its group in head order.
void gqa_pack_backward(ScalarType t, void* dq, void* dk, void* dv, const void* dqkv, int64_t N,
                       int64_t H, int64_t Hkv, int64_t D, cudaStream_t stream);

}  // namespace trident::kernels::cuda
