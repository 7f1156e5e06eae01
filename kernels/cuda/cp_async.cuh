// Asynchronous global -> shared copies (sm_80+), for kernels that load the next tile while
// they compute on the current one (FlashAttention-2's K/V double buffering):
//
//   cp_async_16(smem, gmem)   16 bytes, both 16-byte aligned; cp.async.cg.shared.global
//   cp_async_commit()         closes the group of copies issued since the last commit
//   cp_async_wait<N>()        waits until at most the newest N committed groups are in flight
//
// A thread sees its own completed copies after the wait; other threads after a __syncthreads
// that follows the waits. Under the test-only CUDA emulation (TRIDENT_CUDA_EMULATION) the
// copies are real asynchronous ones as far as a kernel can tell (emu/src/launch.cpp): the
// destination changes only at the wait, so a missing wait reads stale shared memory there too.
#pragma once
#include <cuda_runtime.h>

#if defined(TRIDENT_CUDA_EMULATION)
#include <trident_cp_async_emu.hpp>
#define TRIDENT_CP_ASYNC_SITE const char *file = __builtin_FILE(), int line = __builtin_LINE()
#define TRIDENT_CP_ASYNC_MORE_SITE , TRIDENT_CP_ASYNC_SITE
#else
#define TRIDENT_CP_ASYNC_SITE
#define TRIDENT_CP_ASYNC_MORE_SITE
#endif

namespace trident::kernels::cuda::async {

__device__ inline void cp_async_16(void* smem, const void* gmem TRIDENT_CP_ASYNC_MORE_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::cp_async(smem, gmem, 16, file, line);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
#endif
}

__device__ inline void cp_async_commit(TRIDENT_CP_ASYNC_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::cp_async_commit(file, line);
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ inline void cp_async_wait(TRIDENT_CP_ASYNC_SITE) {
  static_assert(N >= 0 && N < 8, "cp_async_wait: N in [0, 8)");
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::cp_async_wait(N, file, line);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace trident::kernels::cuda::async
