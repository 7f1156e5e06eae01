// Dense matrix multiply on the CPU: a packed AVX2/FMA or AVX-512 kernel, picked at run time
// (cpu_isa.hpp), threaded through OpenMP (Eigen's product on CPUs without AVX2/FMA or with
// TRIDENT_CPU_ISA=generic). The packed kernels' results depend neither on the thread count nor on
// AVX2 vs AVX-512; Eigen's threaded product can change in the last bits with the thread count.
// Row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C[M,N],
// op(X) = X^T when its trans flag is set. lda/ldb/ldc are row strides in elements
// of the matrices as stored (A is stored K x M when transA).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// `batch` independent gemms; matrix i starts at A + i*strideA (same for B, C).
template <typename T>
void gemm_batched(bool transA, bool transB, int64_t batch, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, int64_t strideA, const T* B, int64_t ldb,
                  int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC);

// Eigen's product with gemm's contract: the pre-packed-kernel path, kept as the fallback and
// as the reference for bench/gemm_bench.cpp.
template <typename T>
void gemm_eigen(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// True when gemm runs the packed kernel (cpu_isa() is avx2 or avx512), false when it is Eigen's.
bool gemm_is_packed();

}  // namespace trident::kernels::cpu
