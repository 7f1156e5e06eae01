// SwiGLU's gate (Llama's MLP): out = silu(gate) * up elementwise, silu(g) = g sigmoid(g).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n);
// dgate = dout up silu'(gate), dup = dout silu(gate) (overwrites both);
// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* gate, const T* up, const T* dout, int64_t n);

}  // namespace trident::kernels::cpu
