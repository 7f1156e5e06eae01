// Causal multi-head self-attention on a fused QKV buffer, flash-attention style (the T x T
// probabilities are never stored). Shapes as kernels/cpu/attention.hpp: qkv (B, T, 3C) with
// token t = [q(C) | k(C) | v(C)], head h at columns h*hs .. h*hs+hs of each part, hs = C/NH
// (at most 128); out (B, T, C); scale 1/sqrt(hs).
// `saved` (attention_saved_bytes) receives what backward needs instead of the CPU's (B,NH,T,T)
// probabilities: the fp32 log-sum-exp of every score row (B, NH, T), then a copy of out.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

size_t attention_saved_bytes(ScalarType t, int64_t B, int64_t T, int64_t C, int64_t NH);

void attention_forward(ScalarType t, void* out, void* saved, const void* qkv, int64_t B, int64_t T,
                       int64_t C, int64_t NH, cudaStream_t stream);
// Writes every element of dqkv (B, T, 3C). Deterministic: dK/dV and dQ come from separate
// kernels that each own their outputs (no atomics).
void attention_backward(ScalarType t, void* dqkv, const void* dout, const void* qkv,
                        const void* saved, int64_t B, int64_t T, int64_t C, int64_t NH,
                        Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
