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

}  // namespace trident::kernels::cpu
