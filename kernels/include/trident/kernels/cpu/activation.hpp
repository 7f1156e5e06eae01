// GELU (tanh approximation, as GPT-2): y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// Row softmax over the last dimension: rows x cols.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n);
template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n);

template <typename T>
void softmax_forward(T* out, const T* inp, int64_t rows, int64_t cols);
// dinp = out * (dout - sum(dout * out)) per row.
template <typename T>
void softmax_backward(T* dinp, const T* out, const T* dout, int64_t rows, int64_t cols);

}  // namespace trident::kernels::cpu
