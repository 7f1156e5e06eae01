// Embedding lookup. table (V, C), ids (N) int32, out (N, C).
//
// The table may be the rows [first, first + V) of a vocabulary of `vocab` tokens (a
// vocabulary-parallel shard; vocab < 0 means V, and then first must be 0). Ids must lie in
// [0, vocab); an id outside this shard's rows reads a zero row and adds no gradient.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// out[i, :] = table[ids[i] - first, :], or zeros for an id of another shard. Throws
// std::out_of_range naming the id if one is outside [0, vocab).
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t V, int64_t C,
                       int64_t first = 0, int64_t vocab = -1);
// dtable = 0; dtable[ids[i] - first, :] += dout[i, :] for the ids of this shard. Deterministic
// (no atomics, fixed order per row).
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, int64_t first = 0, int64_t vocab = -1);

}  // namespace trident::kernels::cpu
