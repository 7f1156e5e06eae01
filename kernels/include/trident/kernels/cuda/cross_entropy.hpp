// Softmax cross entropy fused with log-softmax on the GPU; contract as
// kernels/cpu/cross_entropy.hpp (targets < 0 ignored: loss 0, gradient 0). Logits and dlogits
// are f32 or bf16 (t); losses, lse, dlosses and the slice statistics are always f32.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// losses[i] = lse[i] - logits[i, targets[i]], lse (N) saved. A target >= V gives loss 0 and its
// position is recorded in *bad_position (see kNoBadIndex).
void cross_entropy_forward(ScalarType t, float* losses, float* lse, const void* logits,
                           const int32_t* targets, int64_t N, int64_t V, int32_t* bad_position,
                           cudaStream_t stream);
// dlogits[i, j] = (exp(logits[i, j] - lse[i]) - [vocab_start + j == targets[i]]) * dlosses[i]
// (overwrites); a target outside [vocab_start, vocab_start + V) adds no one-hot term.
void cross_entropy_backward(ScalarType t, void* dlogits, const void* logits, const float* lse,
                            const int32_t* targets, const float* dlosses, int64_t N, int64_t V,
                            int64_t vocab_start, cudaStream_t stream);
// The fused classifier (contract as kernels/cpu/cross_entropy.hpp's cross_entropy_fused):
// losses over the first `vocab` of the V columns and, when dloss is not null, *dloss =
// grad_scale / max(1, count of targets >= 0) and the gradient written over the logits. A target
// >= vocab gives loss 0 and a zero gradient row, its position recorded in *bad_position.
void cross_entropy_fused(ScalarType t, void* logits, float* losses, float* dloss,
                         const int32_t* targets, int64_t N, int64_t V, int64_t vocab,
                         double grad_scale, int32_t* bad_position, cudaStream_t stream);
// x (n) *= *factor, a no-op that reads and writes nothing of x when *factor == 1.
void cross_entropy_fused_rescale(ScalarType t, void* x, const float* factor, int64_t n,
                                 cudaStream_t stream);
// Vocabulary-parallel forward: stats (N, 4) of the slice [vocab_start, vocab_start + V), then,
// from the all-gathered (parts, N, 4), lse and losses over the whole vocabulary (NaN loss for a
// target no slice holds). Neither validates on the host.
void cross_entropy_shard_stats(ScalarType t, float* stats, const void* logits,
                               const int32_t* targets, int64_t N, int64_t V, int64_t vocab_start,
                               cudaStream_t stream);
void cross_entropy_shard_combine(float* losses, float* lse, const float* stats,
                                 const int32_t* targets, int64_t N, int parts, cudaStream_t stream);
// *mean = mean of losses over targets >= 0 (0 when none), *inv_count = 1 / max(1, count); both
// one device float, written by one deterministic block (double accumulation).
void cross_entropy_mean(float* mean, float* inv_count, const float* losses, const int32_t* targets,
                        int64_t N, cudaStream_t stream);

}  // namespace trident::kernels::cuda
