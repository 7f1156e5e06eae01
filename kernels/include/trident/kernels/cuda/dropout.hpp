// Inverted dropout on the GPU with the counter-based stream of kernels/cpu/dropout.hpp, so a
// (seed, offset) call draws the same mask on the CPU and on any GPU.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// mask (n) receives 0 or 1/(1-p); out = inp * mask. p in [0, 1] (std::invalid_argument otherwise).
void dropout_forward(ScalarType t, void* out, void* mask, const void* inp, int64_t n, float p,
                     uint64_t seed, uint64_t offset, cudaStream_t stream);
// dinp = dout * mask.
void dropout_backward(ScalarType t, void* dinp, const void* dout, const void* mask, int64_t n,
                      cudaStream_t stream);

}  // namespace trident::kernels::cuda
