// Rotary position embeddings on the GPU; contract as kernels/cpu/rope.hpp (HF's rotate_half
// pairs, HF's f32 angles); f32 or bf16 rows (t). out may be inp.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

void rope_forward(ScalarType t, void* out, const void* inp, int64_t B, int64_t T_, int64_t NH,
                  int64_t D, double theta, int64_t position_offset, bool inverse,
                  cudaStream_t stream);

}  // namespace trident::kernels::cuda
