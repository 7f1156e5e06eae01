// Embedding lookup on the GPU: table (V, C), ids (N) int32 (device), out (N, C).
// The table holds rows [first, first + V) of a vocabulary of `vocab` ids (a vocabulary-parallel
// shard; vocab = V and first = 0 for a whole table): valid ids lie in [0, vocab), and an id of
// another shard reads a zero row and adds no gradient.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// out[i, :] = table[ids[i] - first, :]; a row whose id lies outside [0, vocab) is written as
// zeros and its position recorded in *bad_position (see kNoBadIndex).
void embedding_forward(ScalarType t, void* out, const int32_t* ids, const void* table, int64_t N,
                       int64_t V, int64_t C, int64_t first, int64_t vocab, int32_t* bad_position,
                       cudaStream_t stream);
// dtable = (accumulate ? dtable : 0); dtable[ids[i] - first, :] += dout[i, :]. Deterministic:
// positions are sorted by row with a stable radix sort and each touched row is summed by one
// block in position order, in f32, then added to the row's old value when accumulating (one
// rounding: the bits of adding a fresh table's row); ids of other shards and invalid ids are
// skipped. Accumulating skips the zeroing of the (V, C) table and the separate add.
void embedding_backward(ScalarType t, void* dtable, const void* dout, const int32_t* ids, int64_t N,
                        int64_t V, int64_t C, int64_t first, int64_t vocab, bool accumulate,
                        Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
