// Rotary position embeddings, Hugging Face's rotate_half convention (Llama as exported by HF).
// inp (B, T, NH * D), D even, rows contiguous. For position p = position_offset + t and
// i < D/2: angle = p * inv_freq(i), inv_freq(i) = theta^(-2i/D); each head's pair
// (x[i], x[i + D/2]) is rotated by the angle:
//   out[i] = x[i] cos - x[i + D/2] sin,   out[i + D/2] = x[i + D/2] cos + x[i] sin.
// The angle is computed in f32 in Hugging Face's order (LlamaRotaryEmbedding): e = f32(2i) /
// f32(D), inv_freq = 1 / f32(theta^e), angle = f32(p) * inv_freq, each step rounded to f32, so
// an imported model rotates by the angles it was trained with; cos and sin of that angle are
// taken in double and rounded once to T. (Llama 3.1's rope_scaling is not applied.)
// `inverse` rotates by -angle: the backward pass (the rotation is orthogonal). out may be inp.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void rope_forward(T* out, const T* inp, int64_t B, int64_t T_, int64_t NH, int64_t D, double theta,
                  int64_t position_offset, bool inverse);

}  // namespace trident::kernels::cpu
