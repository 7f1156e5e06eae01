// Softmax cross entropy fused with log-softmax, never storing probabilities.
// logits (N, V), targets (N) int32; a target < 0 is ignored (loss 0, gradient 0).
// losses[i] = logsumexp(logits[i]) - logits[i, targets[i]]; lse (N) saved for backward.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// Throws std::out_of_range naming the target if one is >= V.
template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V);
// dlogits[i, j] = (exp(logits[i, j] - lse[i]) - [j == targets[i]]) * dlosses[i] (overwrites).
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            const T* dlosses, int64_t N, int64_t V);

}  // namespace trident::kernels::cpu
