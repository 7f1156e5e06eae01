// RMS normalisation over the last dimension on the GPU; contract as kernels/cpu/rms_norm.hpp;
// rows f32 or bf16 (t), rstd (N) saved in f32 whatever t.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void rms_norm_forward(ScalarType t, void* out, float* rstd, const void* inp, const void* weight,
                      int64_t N, int64_t C, float eps, cudaStream_t stream);
// Writes dinp (N, C) and dweight (C) (overwrites both); deterministic.
void rms_norm_backward(ScalarType t, void* dinp, void* dweight, const void* dout, const void* inp,
                       const void* weight, const float* rstd, int64_t N, int64_t C,
                       Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
