// Private helpers of the CUDA kernels (not installed): error checks, f32/bf16 loads and stores
// with fp32 arithmetic, deterministic warp/block reductions (fixed shuffle trees, no atomics),
// the storage-type dispatch and grid sizing.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "trident/kernels/cuda/common.hpp"

// Launch and shared-memory spellings that also compile as C++ under the test-only CUDA
// emulation (kernels/cuda/emu, TRIDENT_CUDA_EMULATION), where a launch runs every block's
// threads as fibers on a stream's worker thread:
//   TRIDENT_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...)   kernel<<<...>>>(args...)
//     (a kernel name with a comma, e.g. a template with two arguments, goes in parentheses)
//   TRIDENT_DYNAMIC_SHARED(T, name);       extern __shared__ T name[];
//   TRIDENT_SHARED(T, name, [N][M]);       __shared__ T name[N][M];
#if defined(TRIDENT_CUDA_EMULATION)
#define TRIDENT_LAUNCH(kernel, grid, block, smem, stream) \
  ::cuemu::launch(kernel, #kernel, grid, block, smem, stream, __FILE__, __LINE__)
#define TRIDENT_DYNAMIC_SHARED(T, name) T* name = ::cuemu::dynamic_shared<T>()
#define TRIDENT_SHARED(T, name, dims) \
  T(&name) dims = ::cuemu::static_shared<T dims>(__FILE__, __LINE__)
#else
#define TRIDENT_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define TRIDENT_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#define TRIDENT_SHARED(T, name, dims) __shared__ T name dims
#endif

namespace trident::kernels::cuda::detail {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  }
}
// After every launch: a bad configuration or a missing kernel image surfaces here.
inline void check_launch(const char* kernel) {
  check_cuda(cudaGetLastError(), kernel);
}

// The index of the multi-tensor table entry that holds chunk `b`: the last i with
// table[i].first_chunk <= b (entries of no chunks share their successor's first chunk and are
// passed over). Entry is any struct with an int64_t first_chunk, in ascending order.
template <typename Entry>
__device__ __forceinline__ int table_entry_of_chunk(const Entry* table, int count, int64_t b) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_chunk <= b) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Copies a multi-tensor kernel's device table (`bytes` of host `entries`) on `stream`. Never
// during a stream capture: the graph would replay the copy from host memory that no longer holds
// the table; `who` and `what` (what changed while capturing) name the refusal.
inline void upload_table(void* table, const void* entries, size_t bytes, const char* who,
                         const char* what, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &capture), who);
  if (capture != cudaStreamCaptureStatusNone) {
    throw std::runtime_error(std::string(who) + ": " + what +
                             " changed while a CUDA graph is being captured (the table must be "
                             "written before the capture)");
  }
  check_cuda(cudaMemcpyAsync(table, entries, bytes, cudaMemcpyHostToDevice, stream), who);
}

[[noreturn]] inline void unsupported(const char* who, ScalarType t) {
  throw std::invalid_argument(std::string(who) + ": dtype " + scalar_name(t) +
                              " is not supported on CUDA (use f32 or bf16)");
}

// fp32 view of a stored element and back (round to nearest even for bf16).
__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values. The order of additions depends only on blockDim.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  return warp_sum(v);
}
__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// 1-D grid for a grid-stride loop over n items with `threads` per block.
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = int64_t{1} << 20) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

}  // namespace trident::kernels::cuda::detail

// Binds `T` to the storage type of a ScalarType (f32 or bf16) around the statements.
#define TRIDENT_CUDA_FLOAT_DISPATCH(type, who, ...)             \
  switch (type) {                                               \
    case ::trident::kernels::cuda::ScalarType::F32: {           \
      using T = float;                                          \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    case ::trident::kernels::cuda::ScalarType::BF16: {          \
      using T = __nv_bfloat16;                                  \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    default:                                                    \
      ::trident::kernels::cuda::detail::unsupported(who, type); \
  }
