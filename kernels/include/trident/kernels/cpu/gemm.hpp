// Dense matrix multiply on the CPU (Eigen, multi-threaded through OpenMP).
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
void gemm_batched(bool transA, bool transB, int64_t batch, int64_t M, int64_t N, int64_t K,
                  T alpha, const T* A, int64_t lda, int64_t strideA, const T* B, int64_t ldb,
                  int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC);

}  // namespace trident::kernels::cpu
