// Softmax cross entropy fused with log-softmax on the GPU; contract as
// kernels/cpu/cross_entropy.hpp (targets < 0 ignored: loss 0, gradient 0).
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// losses[i] = lse[i] - logits[i, targets[i]], lse (N) saved. A target >= V gives loss 0 and its
// position is recorded in *bad_position (see kNoBadIndex).
void cross_entropy_forward(ScalarType t, void* losses, void* lse, const void* logits,
                           const int32_t* targets, int64_t N, int64_t V, int32_t* bad_position,
                           cudaStream_t stream);
// dlogits[i, j] = (exp(logits[i, j] - lse[i]) - [j == targets[i]]) * dlosses[i] (overwrites).
void cross_entropy_backward(ScalarType t, void* dlogits, const void* logits, const void* lse,
                            const int32_t* targets, const void* dlosses, int64_t N, int64_t V,
                            cudaStream_t stream);

}  // namespace trident::kernels::cuda
