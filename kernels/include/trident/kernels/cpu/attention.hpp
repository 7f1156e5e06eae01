// Causal multi-head self-attention on a fused QKV projection.
// qkv (B, T, 3C): for each token [q(C) | k(C) | v(C)], head h uses columns h*hs..(h+1)*hs of
// each part, hs = C / NH. out (B, T, C) with heads concatenated in the same order.
// att (B, NH, T, T) keeps the softmax probabilities (row t is zero past column t) for backward.
// Scale 1/sqrt(hs). Same math as torch scaled_dot_product_attention(is_causal=True).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH);
// Writes dqkv (B, T, 3C) (overwrites).
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int64_t B, int64_t T_,
                        int64_t C, int64_t NH);

}  // namespace trident::kernels::cpu
