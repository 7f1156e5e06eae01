// Private to the CPU kernels (not installed): the packed AVX2/FMA product behind gemm().
#pragma once
#include <cstdint>

namespace trident::kernels::cpu::detail {

// True when this build has the packed kernel (compiled with AVX2 and FMA).
bool gemm_packed_native();

// C = alpha op(A) op(B) + beta C on arguments gemm() has checked, with M, N, K > 0 and
// alpha != 0. Threads over OpenMP unless called inside a parallel region.
template <typename T>
void gemm_packed_product(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha,
                         const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                         int64_t ldc);

}  // namespace trident::kernels::cpu::detail
