// Private to the CPU kernels (not installed): the packed AVX2 / AVX-512 product behind gemm(),
// its ISA picked at run time (cpu_isa.hpp).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu::detail {

// True when gemm_packed_product runs here: cpu_isa() is avx2 or avx512.
bool gemm_packed_available();

// C = alpha op(A) op(B) + beta C on arguments gemm() has checked, with M, N, K > 0 and
// alpha != 0. Threads over OpenMP unless called inside a parallel region.
template <typename T>
void gemm_packed_product(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha,
                         const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                         int64_t ldc);

}  // namespace trident::kernels::cpu::detail
