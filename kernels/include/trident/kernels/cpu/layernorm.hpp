// Layer normalisation over the last dimension.
// inp (N, C) -> out (N, C): out = (inp - mean) * rstd * weight + bias,
// rstd = 1 / sqrt(var + eps) with the biased variance. mean and rstd (N) are saved for backward
// in T, the arithmetic type: the CPU backend runs bf16 rows through the f32 instantiation and
// hands these two buffers over as f32, never rounded to bf16 (backward rebuilds the normalised
// values (x - mean) * rstd from them).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, T eps);
// Writes dinp (N, C), dweight (C), dbias (C) (overwrites all three).
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C);

// Fused residual + layer norm (llm.c's fused_residual_forward): residual = x + delta (N, C),
// then out, mean and rstd as layernorm_forward of residual. With round_residual_to_bf16 (T =
// float serving bf16 rows) the sum is rounded to bf16 before it is stored and normalised, so the
// values are exactly those of an add followed by layernorm_forward, each rounded once.
template <typename T>
void residual_layernorm_forward(T* residual, T* out, T* mean, T* rstd, const T* x, const T* delta,
                                const T* weight, const T* bias, int64_t N, int64_t C, T eps,
                                bool round_residual_to_bf16 = false);
// layernorm_backward of the residual plus the gradient the residual stream already has:
// dinp = dresidual + rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)), one write of dinp.
// dresidual may be null (nothing to add) or equal to dinp (accumulated in place).
template <typename T>
void residual_layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dresidual, const T* dout,
                                 const T* residual, const T* weight, const T* mean, const T* rstd,
                                 int64_t N, int64_t C);

}  // namespace trident::kernels::cpu
