// 128-bit loads and stores for the memory-bound kernels: a Pack<T> is 16 bytes (4 f32 or 8
// bf16), read or written in one instruction (LDG.128 / STG.128) when its address is 16-byte
// aligned (Vec<T, W> in general: W elements aligned to their size, e.g. 4 bf16 in 8 bytes for a
// conversion from 4 f32). Kernels are templated on a width W: W = Pack<T>::N walks a row or a
// flat range in packs, W = 1 element by element (the fallback for unaligned pointers and rows).
// The launcher picks W with vec_width() on the host from the pointers and the row length; flat
// ranges of any length take packs then a scalar tail (flat_packs). The element-wise arithmetic
// is the same at every width, so results differ only in the order of sums.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "common.cuh"

namespace trident::kernels::cuda::detail {

template <typename T, int W>
struct alignas(sizeof(T) * W) Vec {
  T v[W];
};
template <typename T>
struct Pack : Vec<T, 16 / static_cast<int>(sizeof(T))> {
  static constexpr int N = 16 / static_cast<int>(sizeof(T));
};

__host__ __device__ inline bool aligned_to(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}
__host__ __device__ inline bool aligned16(const void* p) {
  return aligned_to(p, 16);
}

// Pack<T>::N when every pointer is 16-byte aligned and `stride` (a row length, or 0 for one flat
// range) is a multiple of the pack, else 1. Null pointers (optional operands) do not count.
template <typename T>
int vec_width(int64_t stride, std::initializer_list<const void*> ptrs) {
  if (stride % Pack<T>::N != 0) return 1;
  for (const void* p : ptrs) {
    if (p != nullptr && !aligned16(p)) return 1;
  }
  return Pack<T>::N;
}

// W consecutive elements at p as fp32 (p aligned to W elements' bytes when W > 1).
template <int W, typename T>
__device__ __forceinline__ void load_f(const T* p, float (&f)[W]) {
  if constexpr (W == 1) {
    f[0] = to_float(*p);
  } else {
    static_assert(W * sizeof(T) <= 16, "a vector access is at most 16 bytes");
    const Vec<T, W> pk = *reinterpret_cast<const Vec<T, W>*>(p);
#pragma unroll
    for (int k = 0; k < W; ++k) f[k] = to_float(pk.v[k]);
  }
}
template <int W, typename T>
__device__ __forceinline__ void store_f(T* p, const float (&f)[W]) {
  if constexpr (W == 1) {
    *p = from_float<T>(f[0]);
  } else {
    static_assert(W * sizeof(T) <= 16, "a vector access is at most 16 bytes");
    Vec<T, W> pk;
#pragma unroll
    for (int k = 0; k < W; ++k) pk.v[k] = from_float<T>(f[k]);
    *reinterpret_cast<Vec<T, W>*>(p) = pk;
  }
}

// A grid-stride loop over n elements in chunks of W: f(i, std::integral_constant<int, K>) handles
// elements [i, i + K), K = W for the n / W whole chunks (element i aligned when the base
// pointers are), then K = 1 for the tail of n % W elements.
template <int W, typename F>
__device__ __forceinline__ void flat_packs(int64_t n, F&& f) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t chunks = n / W;
  for (int64_t c = tid; c < chunks; c += stride) f(c * W, std::integral_constant<int, W>());
  if constexpr (W > 1) {
    for (int64_t i = chunks * W + tid; i < n; i += stride) f(i, std::integral_constant<int, 1>());
  }
}

// x rounded to the storage type T and back (identity for f32).
template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return to_float(from_float<T>(x));
}

}  // namespace trident::kernels::cuda::detail

// Runs the statements with the constexpr int `W` bound to `width` (1 or Pack<T>::N).
#define TRIDENT_VEC_DISPATCH(T, width, ...)                         \
  if ((width) == ::trident::kernels::cuda::detail::Pack<T>::N) {    \
    constexpr int W = ::trident::kernels::cuda::detail::Pack<T>::N; \
    __VA_ARGS__;                                                    \
  } else {                                                          \
    constexpr int W = 1;                                            \
    __VA_ARGS__;                                                    \
  }
