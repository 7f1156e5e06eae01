// Embedding lookup. table (V, C), ids (N) int32 in [0, V), out (N, C).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// out[i, :] = table[ids[i], :]. Throws std::out_of_range naming the id if one is outside [0, V).
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t V, int64_t C);
// dtable = 0; dtable[ids[i], :] += dout[i, :]. Deterministic (no atomics, fixed order per row).
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C);

}  // namespace trident::kernels::cpu
