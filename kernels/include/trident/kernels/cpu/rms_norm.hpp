// RMS normalisation over the last dimension (Llama's RMSNorm).
// inp (N, C) -> out (N, C): out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps).
// rstd (N) is saved for backward in T, the arithmetic type: the CPU backend runs bf16 rows
// through the f32 instantiation and hands this buffer over as f32, never rounded to bf16.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void rms_norm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, T eps);
// Writes dinp (N, C) and dweight (C) (overwrites both).
template <typename T>
void rms_norm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                       const T* rstd, int64_t N, int64_t C);

}  // namespace trident::kernels::cpu
