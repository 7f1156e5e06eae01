// Grouped-query attention's fused input (contract in kernels/cpu/gqa_pack.hpp): q (N, H*D),
// k and v (N, Hkv*D) -> qkv (N, 3*H*D), rows [q | k | v], query head h reading kv head
// h / (H / Hkv). Forward: one thread per output element (a gather). Backward: one thread per
// element of dq, dk and dv; a dk or dv element sums the H / Hkv repeats of its kv head in head
// order (deterministic, no atomics).
#include "common.cuh"
#include "trident/kernels/cuda/gqa_pack.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::to_float;

template <typename T>
__global__ void gqa_pack_forward_kernel(T* qkv, const T* q, const T* k, const T* v, int64_t N,
                                        int64_t H, int64_t Hkv, int64_t D) {
  const int64_t C = H * D, Ckv = Hkv * D, group = H / Hkv;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < N * 3 * C;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx / (3 * C), col = idx % (3 * C), part = col / C, c = col % C;
    if (part == 0) {
      qkv[idx] = q[n * C + c];
    } else {
      const int64_t src = n * Ckv + (c / D / group) * D + c % D;
      qkv[idx] = part == 1 ? k[src] : v[src];
    }
  }
}

template <typename T>
__global__ void gqa_pack_backward_kernel(T* dq, T* dk, T* dv, const T* dqkv, int64_t N, int64_t H,
                                         int64_t Hkv, int64_t D) {
  const int64_t C = H * D, Ckv = Hkv * D, group = H / Hkv, width = C + 2 * Ckv;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < N * width;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx / width, col = idx % width;
    const T* row = dqkv + n * 3 * C;
    if (col < C) {
      dq[n * C + col] = row[col];
      continue;
    }
    const int64_t part = (col - C) / Ckv, c = (col - C) % Ckv;  // 0: k, 1: v
    const int64_t j = c / D, d = c % D;
    const T* src = row + (part + 1) * C + j * group * D + d;
    float s = 0.0f;
    for (int64_t r = 0; r < group; ++r) s += to_float(src[r * D]);
    (part == 0 ? dk : dv)[n * Ckv + c] = from_float<T>(s);
  }
}

}  // namespace

void gqa_pack_forward(ScalarType t, void* qkv, const void* q, const void* k, const void* v,
                      int64_t N, int64_t H, int64_t Hkv, int64_t D, cudaStream_t stream) {
  if (N <= 0 || H <= 0 || D <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "gqa_pack_qkv", {
    TRIDENT_LAUNCH(gqa_pack_forward_kernel<T>, detail::grid_for(N * 3 * H * D, 256), 256, 0, stream)
    (static_cast<T*>(qkv), static_cast<const T*>(q), static_cast<const T*>(k),
     static_cast<const T*>(v), N, H, Hkv, D);
    check_launch("gqa_pack_forward_kernel");
  });
}

void gqa_pack_backward(ScalarType t, void* dq, void* dk, void* dv, const void* dqkv, int64_t N,
                       int64_t H, int64_t Hkv, int64_t D, cudaStream_t stream) {
  if (N <= 0 || H <= 0 || D <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "gqa_pack_qkv_backward", {
    TRIDENT_LAUNCH(gqa_pack_backward_kernel<T>, detail::grid_for(N * (H + 2 * Hkv) * D, 256), 256,
                   0, stream)
    (static_cast<T*>(dq), static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(dqkv), N,
     H, Hkv, D);
    check_launch("gqa_pack_backward_kernel");
  });
}

}  // namespace trident::kernels::cuda
