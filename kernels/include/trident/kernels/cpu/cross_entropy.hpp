// Softmax cross entropy fused with log-softmax, never storing probabilities.
// logits (N, V), targets (N) int32; a target < 0 is ignored (loss 0, gradient 0).
// losses[i] = logsumexp(logits[i]) - logits[i, targets[i]]; lse (N) saved for backward.
// Losses, lse and the statistics are in T, the arithmetic type: the CPU backend runs bf16
// logits through the f32 instantiation and hands these buffers over as f32, unrounded.
//
// Vocabulary-parallel form (Megatron-LM): each of `parts` ranks holds the columns
// [vocab_start, vocab_start + V) of every row. cross_entropy_shard_stats summarises its slice,
// the caller all-gathers the summaries, cross_entropy_shard_combine turns them into lse and
// losses over the whole vocabulary, and cross_entropy_backward with that vocab_start gives the
// slice's gradient. No rank ever holds all the logits.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// Throws std::out_of_range naming the target if one is >= V.
template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V);
// dlogits[i, j] = (exp(logits[i, j] - lse[i]) - [vocab_start + j == targets[i]]) * dlosses[i]
// (overwrites); zero rows for targets < 0. A target outside [vocab_start, vocab_start + V)
// belongs to another slice and adds no one-hot term.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            const T* dlosses, int64_t N, int64_t V, int64_t vocab_start = 0);

// stats (N, 4) for the slice [vocab_start, vocab_start + V): {m = max_j x[i, j],
// sum_j exp(x[i, j] - m), x[i, targets[i] - vocab_start] or 0, 1 if the slice holds the
// target else 0}. Throws std::invalid_argument for V <= 0.
template <typename T>
void cross_entropy_shard_stats(T* stats, const T* logits, const int32_t* targets, int64_t N,
                               int64_t V, int64_t vocab_start);
// From the stats (parts, N, 4) of every slice, in slice order: lse[i] = M + log(sum_p s_p
// exp(m_p - M)) with M = max_p m_p; losses[i] = lse[i] - target logit, 0 for a target < 0, NaN
// when no slice (or more than one) holds the target.
template <typename T>
void cross_entropy_shard_combine(T* losses, T* lse, const T* stats, const int32_t* targets,
                                 int64_t N, int parts);
// *mean = sum of losses over targets >= 0 / their count (0 when none), *inv_count =
// 1 / max(1, count); summed in double, in row order.
template <typename T>
void cross_entropy_mean(T* mean, T* inv_count, const T* losses, const int32_t* targets, int64_t N);

}  // namespace trident::kernels::cpu
