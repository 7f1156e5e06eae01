// Bias add and its gradient for row-major (rows, cols) activations.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// out[r, c] = in[r, c] + bias[c] (in may alias out).
void add_bias(ScalarType t, void* out, const void* in, const void* bias, int64_t rows, int64_t cols,
              cudaStream_t stream);
// dbias[c] = sum_r dout[r, c], deterministic (see reduce.hpp sum_rows). Overwrites dbias.
void bias_backward(ScalarType t, void* dbias, const void* dout, int64_t rows, int64_t cols,
                   Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
