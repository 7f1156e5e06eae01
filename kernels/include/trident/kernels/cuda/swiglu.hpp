// SwiGLU's gate on the GPU; contract as kernels/cpu/swiglu.hpp; f32 or bf16 storage (t).
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void swiglu_forward(ScalarType t, void* out, const void* gate, const void* up, int64_t n,
                    cudaStream_t stream);
// dgate and dup (overwrites both).
void swiglu_backward(ScalarType t, void* dgate, void* dup, const void* gate, const void* up,
                     const void* dout, int64_t n, cudaStream_t stream);

}  // namespace trident::kernels::cuda
