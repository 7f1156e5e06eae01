// Layer normalisation over the last dimension on the GPU; contract as
// kernels/cpu/layernorm.hpp (biased variance); rows f32 or bf16 (t), mean and rstd (N) saved in
// f32 whatever t.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void layernorm_forward(ScalarType t, void* out, float* mean, float* rstd, const void* inp,
                       const void* weight, const void* bias, int64_t N, int64_t C, float eps,
                       cudaStream_t stream);
// Writes dinp (N, C), dweight (C), dbias (C) (overwrites all three); deterministic.
void layernorm_backward(ScalarType t, void* dinp, void* dweight, void* dbias, const void* dout,
                        const void* inp, const void* weight, const float* mean, const float* rstd,
                        int64_t N, int64_t C, Scratch& scratch, cudaStream_t stream);

// Fused residual + layer norm, contract as kernels/cpu/layernorm.hpp: residual = x + delta
// (rounded to t), out/mean/rstd = layernorm_forward of that residual, in one kernel.
void residual_layernorm_forward(ScalarType t, void* residual, void* out, float* mean, float* rstd,
                                const void* x, const void* delta, const void* weight,
                                const void* bias, int64_t N, int64_t C, float eps,
                                cudaStream_t stream);
// layernorm_backward of the residual with dresidual (null, or possibly equal to dinp) added into
// dinp in the same kernel.
void residual_layernorm_backward(ScalarType t, void* dinp, void* dweight, void* dbias,
                                 const void* dresidual, const void* dout, const void* residual,
                                 const void* weight, const float* mean, const float* rstd,
                                 int64_t N, int64_t C, Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
