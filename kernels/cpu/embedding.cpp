// Embedding lookup: table (V, C) row-major, ids (N) int32, out/dout (N, C).
// Forward copies rows in parallel over N. Backward scatters dout rows into dtable; to stay
// deterministic without atomics, threads own disjoint column blocks of dtable and each walks
// all N ids in order (zeroing its block first), so every dtable element is summed in the same order
// on any thread count.
#include "trident/kernels/cpu/embedding.hpp"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

// The id range [0, vocab) of a table holding rows [first, first + V); throws when they disagree.
int64_t vocab_of(const char* who, int64_t V, int64_t first, int64_t vocab) {
  if (vocab < 0) vocab = V;
  if (first < 0 || first + V > vocab) {
    throw std::invalid_argument(std::string(who) + ": rows [" + std::to_string(first) + ", " +
                                std::to_string(first + V) + ") are not inside a vocabulary of " +
                                std::to_string(vocab));
  }
  return vocab;
}

void check_ids(const char* who, const int32_t* ids, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      throw std::out_of_range(std::string(who) + ": token id " + std::to_string(ids[i]) +
                              " at position " + std::to_string(i) + " is outside [0, " +
                              std::to_string(V) + "); check the tokenizer's vocabulary size");
    }
  }
}

}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t V, int64_t C,
                       int64_t first, int64_t vocab) {
  check_ids("embedding_forward", ids, N, vocab_of("embedding_forward", V, first, vocab));
#pragma omp parallel for schedule(static) if (N * C > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const int64_t r = static_cast<int64_t>(ids[i]) - first;
    if (r >= 0 && r < V) {
      std::copy(table + r * C, table + (r + 1) * C, out + i * C);
    } else {
      std::fill_n(out + i * C, C, T(0));
    }
  }
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, int64_t first, int64_t vocab) {
  check_ids("embedding_backward", ids, N, vocab_of("embedding_backward", V, first, vocab));
  // Column blocks of at least 16 elements (one cache line of floats) so that threads never
  // share a line of dtable.
  const int64_t threads = N * C > detail::kParallelGrain ? omp_get_max_threads() : 1;
  const int64_t block = std::max<int64_t>(16, ((C + threads - 1) / threads + 15) / 16 * 16);
  const int64_t n_blocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) if (n_blocks > 1)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t c0 = b * block, len = std::min(block, C - c0);
    for (int64_t v = 0; v < V; ++v) std::fill_n(dtable + v * C + c0, len, T(0));
    for (int64_t i = 0; i < N; ++i) {
      const int64_t r = static_cast<int64_t>(ids[i]) - first;
      if (r < 0 || r >= V) continue;  // another shard's row
      T* dst = dtable + r * C + c0;
      const T* src = dout + i * C + c0;
#pragma omp simd
      for (int64_t c = 0; c < len; ++c) dst[c] += src[c];
    }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int64_t, int64_t,
                                       int64_t, int64_t, int64_t);
template void embedding_forward<double>(double*, const int32_t*, const double*, int64_t, int64_t,
                                        int64_t, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                        int64_t, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t,
                                         int64_t, int64_t, int64_t);

}  // namespace trident::kernels::cpu
