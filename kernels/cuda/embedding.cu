// Embedding lookup: table (V, C) row-major, ids (N) int32, out/dout (N, C).
// Forward: one thread per output element; ids are checked on the device (bad ones give zero
// rows and are reported through an atomicMin on an int, which is deterministic). A
// vocabulary-parallel shard holds rows [first, first + V): other shards' ids read zeros.
// Backward without float atomics: keys[i] = ids[i] (V for an invalid id) and values[i] = i are
// sorted by key with CUB's radix sort, which is stable, so equal ids keep their positions in
// increasing order. dtable is zeroed; then for each run of equal keys in the sorted order
// (found by the block whose index starts the run), one block adds the run's dout rows in that
// order, each thread owning columns c, c + blockDim, ... and writing the row once. The result
// is the same on every run whatever the schedule.
#include <algorithm>
#include <cub/device/device_radix_sort.cuh>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "trident/kernels/cuda/embedding.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;

template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* table, int64_t N,
                                         int64_t V, int64_t C, int64_t first, int64_t vocab,
                                         int32_t* bad_position) {
  const int64_t total = N * C;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k / C, c = k - i * C;
    const int32_t id = ids[i];
    const int64_t r = int64_t(id) - first;
    if (id < 0 || id >= vocab) {
      out[k] = detail::from_float<T>(0.0f);
      if (c == 0) atomicMin(bad_position, static_cast<int32_t>(min(i, int64_t{kNoBadIndex})));
    } else if (r < 0 || r >= V) {
      out[k] = detail::from_float<T>(0.0f);  // another shard's row
    } else {
      out[k] = table[r * C + c];
    }
  }
}

__global__ void embedding_keys_kernel(const int32_t* ids, int64_t N, int64_t V, int64_t first,
                                      uint32_t* keys, int32_t* positions) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = int64_t(ids[i]) - first;  // invalid ids fall outside [0, V) too
    keys[i] = (r < 0 || r >= V) ? static_cast<uint32_t>(V) : static_cast<uint32_t>(r);
    positions[i] = static_cast<int32_t>(i);
  }
}

template <typename T>
__global__ void embedding_accumulate_kernel(T* dtable, const T* dout, const uint32_t* keys,
                                            const int32_t* positions, int64_t N, int64_t V,
                                            int64_t C, bool accumulate) {
  for (int64_t k = blockIdx.x; k < N; k += gridDim.x) {
    const uint32_t key = keys[k];
    if (key >= V || (k > 0 && keys[k - 1] == key)) continue;  // not the start of a valid run
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = k; j < N && keys[j] == key; ++j) {
        acc += detail::to_float(dout[int64_t(positions[j]) * C + c]);
      }
      T& dst = dtable[int64_t(key) * C + c];
      // The run's sum rounded to T first, then added: a fresh table's row plus the old value.
      dst = accumulate ? detail::from_float<T>(detail::to_float(dst) +
                                               detail::to_float(detail::from_float<T>(acc)))
                       : detail::from_float<T>(acc);
    }
  }
}

}  // namespace

namespace {
void check_rows(const char* who, int64_t V, int64_t first, int64_t vocab) {
  if (first < 0 || first + V > vocab || vocab >= (int64_t{1} << 31)) {
    throw std::invalid_argument(std::string(who) + ": rows [" + std::to_string(first) + ", " +
                                std::to_string(first + V) + ") are not inside a vocabulary of " +
                                std::to_string(vocab) + " 32-bit ids");
  }
}
}  // namespace

void embedding_forward(ScalarType t, void* out, const int32_t* ids, const void* table, int64_t N,
                       int64_t V, int64_t C, int64_t first, int64_t vocab, int32_t* bad_position,
                       cudaStream_t stream) {
  check_rows("embedding_forward", V, first, vocab);
  detail::check_cuda(cudaMemsetAsync(bad_position, 0x7F, sizeof(int32_t), stream),
                     "embedding_forward");
  if (N <= 0 || C <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "embedding", {
    TRIDENT_LAUNCH(embedding_forward_kernel<T>, detail::grid_for(N * C, 256), 256, 0, stream)
    (static_cast<T*>(out), ids, static_cast<const T*>(table), N, V, C, first, vocab, bad_position);
    check_launch("embedding_forward_kernel");
  });
}

void embedding_backward(ScalarType t, void* dtable, const void* dout, const int32_t* ids, int64_t N,
                        int64_t V, int64_t C, int64_t first, int64_t vocab, bool accumulate,
                        Scratch& scratch, cudaStream_t stream) {
  check_rows("embedding_backward", V, first, vocab);
  if (V <= 0 || C <= 0) return;
  if (N > int64_t{1} << 30 || V >= int64_t{1} << 31) {
    throw std::invalid_argument("embedding_backward: " + std::to_string(N) + " ids over " +
                                std::to_string(V) + " rows exceed the 32-bit sort keys");
  }
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "embedding_backward", {
    if (!accumulate) {
      detail::check_cuda(cudaMemsetAsync(dtable, 0, size_t(V) * size_t(C) * sizeof(T), stream),
                         "embedding_backward (zero)");
    }
    if (N > 0) {
      uint32_t* keys_in = scratch.get_as<uint32_t>(N);
      uint32_t* keys_out = scratch.get_as<uint32_t>(N);
      int32_t* pos_in = scratch.get_as<int32_t>(N);
      int32_t* pos_out = scratch.get_as<int32_t>(N);
      int end_bit = 1;
      while (end_bit < 32 && (int64_t{1} << end_bit) <= V) ++end_bit;  // keys lie in [0, V]
      TRIDENT_LAUNCH(embedding_keys_kernel, detail::grid_for(N, 256), 256, 0, stream)
      (ids, N, V, first, keys_in, pos_in);
      check_launch("embedding_keys_kernel");
      size_t temp_bytes = 0;
      const int n = static_cast<int>(N);
      detail::check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out,
                                                         pos_in, pos_out, n, 0, end_bit, stream),
                         "embedding_backward (sort size)");
      void* temp = scratch.get(std::max<size_t>(temp_bytes, 1));
      detail::check_cuda(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out,
                                                         pos_in, pos_out, n, 0, end_bit, stream),
                         "embedding_backward (sort)");
      const unsigned grid = static_cast<unsigned>(std::min<int64_t>(N, 65535));
      const int threads = static_cast<int>(std::min<int64_t>(256, (C + 31) / 32 * 32));
      TRIDENT_LAUNCH(embedding_accumulate_kernel<T>, grid, threads, 0, stream)
      (static_cast<T*>(dtable), static_cast<const T*>(dout), keys_out, pos_out, N, V, C,
       accumulate);
      check_launch("embedding_accumulate_kernel");
    }
  });
}

}  // namespace trident::kernels::cuda
