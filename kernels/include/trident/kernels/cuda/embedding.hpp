// Embedding lookup on the GPU: table (V, C), ids (N) int32 (device), out (N, C).
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// out[i, :] = table[ids[i], :]; a row whose id lies outside [0, V) is written as zeros and
// its position recorded in *bad_position (see kNoBadIndex).
void embedding_forward(ScalarType t, void* out, const int32_t* ids, const void* table, int64_t N,
                       int64_t V, int64_t C, int32_t* bad_position, cudaStream_t stream);
// dtable = 0; dtable[ids[i], :] += dout[i, :]. Deterministic: positions are sorted by id with a
// stable radix sort and each touched row is summed by one block in position order; ids outside
// [0, V) are skipped.
void embedding_backward(ScalarType t, void* dtable, const void* dout, const int32_t* ids,
                        int64_t N, int64_t V, int64_t C, Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
