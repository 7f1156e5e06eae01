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

// The fused classifier (llm.c's): the losses of rows over the first `vocab` columns of logits
// (N, V) (columns [vocab, V) are padding: no probability mass) and, when dloss is not null, the
// gradient written IN PLACE of the logits: logits[i, j] = (exp(x[i, j] - lse[i]) - [j ==
// targets[i]]) * dloss for j < vocab, 0 for padding columns and for rows whose target is < 0,
// with dloss = grad_scale / max(1, count of targets >= 0) (the gradient of grad_scale times the
// mean loss), also stored in *dloss. Losses and gradient are cross_entropy_forward's over the
// first `vocab` columns and cross_entropy_backward's with that dloss, by the same row arithmetic
// (equal but for the last bits of Eigen's vectorised exp at another row alignment). Throws
// std::out_of_range naming a target >= vocab before writing anything.
template <typename T>
void cross_entropy_fused(T* logits, T* losses, T* dloss, const int32_t* targets, int64_t N,
                         int64_t V, int64_t vocab, double grad_scale);
// x (n) *= *factor; returns without touching x when *factor == 1 (the fused classifier's gradient
// already holds the upstream gradient it was told to expect).
template <typename T>
void cross_entropy_fused_rescale(T* x, const T* factor, int64_t n);

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
