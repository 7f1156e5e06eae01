// GELU (tanh approximation, GPT-2) and row softmax on the GPU; contracts as
// kernels/cpu/activation.hpp.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void gelu_forward(ScalarType t, void* out, const void* inp, int64_t n, cudaStream_t stream);
// dinp = dout * gelu'(inp) (overwrites).
void gelu_backward(ScalarType t, void* dinp, const void* inp, const void* dout, int64_t n,
                   cudaStream_t stream);
// Row softmax over (rows, cols).
void softmax_forward(ScalarType t, void* out, const void* inp, int64_t rows, int64_t cols,
                     cudaStream_t stream);
// dinp = out * (dout - sum(dout * out)) per row.
void softmax_backward(ScalarType t, void* dinp, const void* out, const void* dout, int64_t rows,
                      int64_t cols, cudaStream_t stream);

}  // namespace trident::kernels::cuda
