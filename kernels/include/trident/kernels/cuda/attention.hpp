// Causal multi-head self-attention on a fused QKV buffer, flash-attention style (the T x T
// probabilities are never stored). Shapes as kernels/cpu/attention.hpp: qkv (B, T, 3C) with
// token t = [q(C) | k(C) | v(C)], head h at columns h*hs .. h*hs+hs of each part, hs = C/NH
// (at most 128); out (B, T, C); scale 1/sqrt(hs).
// `saved` (attention_saved_bytes) receives what backward needs instead of the CPU's (B,NH,T,T)
// probabilities: the fp32 log-sum-exp of every score row (B, NH, T). Backward also reads the
// forward's `out` (unchanged since the forward) for D = rowsum(dO * O): out is written once.
//
// Kernels: bf16 storage with head size 64 or 128 runs FlashAttention-2 on tensor cores (mma.sync:
// forward kernels/cuda/attention_fa2_fwd.cu, backward attention_fa2_bwd.cu); f32, other head
// sizes and unaligned pointers run the fp32 SIMT kernels of attention.cu. The tensor-core backward
// accumulates dQ with fp32 atomicAdd, so on a GPU its dQ is not bitwise reproducible from run to
// run (dK, dV and the forward are). TRIDENT_ATTENTION_DETERMINISTIC=1 in the environment (read at
// every call) makes backward use the deterministic SIMT kernels instead (slower; same saved
// buffer). The default is the tensor-core backward: it is the one that makes attention a few
// percent of a GPT step rather than most of it, and training already differs from the CPU by
// rounding, not bitwise.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

size_t attention_saved_bytes(ScalarType t, int64_t B, int64_t T, int64_t C, int64_t NH);

// Launches since the process started, by kernel family: lets tests prove which path ran.
// fa2_forward counts attention_forward_fa2_kernel (mma.sync, attention_fa2_fwd.cu),
// fa2_backward counts attention_backward_fa2_kernel (mma.sync, attention_fa2_bwd.cu).
struct AttentionKernelCounts {
  uint64_t fa2_forward, fa2_backward, simt_forward, simt_backward;
};
AttentionKernelCounts attention_kernel_counts();

void attention_forward(ScalarType t, void* out, void* saved, const void* qkv, int64_t B, int64_t T,
                       int64_t C, int64_t NH, cudaStream_t stream);
// Writes every element of dqkv (B, T, 3C). The SIMT path is deterministic (dK/dV and dQ come
// from separate kernels that each own their outputs); the tensor-core path is not for dQ (above).
void attention_backward(ScalarType t, void* dqkv, const void* dout, const void* qkv,
                        const void* out, const void* saved, int64_t B, int64_t T, int64_t C,
                        int64_t NH, Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
