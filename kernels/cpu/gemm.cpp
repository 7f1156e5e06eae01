// Dense GEMM on row-major buffers. C[M,N] = alpha op(A) op(B) + beta C, with A stored (M,K) or,
// transposed, (K,M) with row stride lda (same for B, C).
// gemm() checks the arguments, handles the empty cases (K == 0 or alpha == 0: C = beta C) and
// runs the packed AVX2 or AVX-512 kernel (gemm_packed.cpp, picked at run time by cpu_isa()),
// which threads over OpenMP itself; CPUs without AVX2/FMA (or TRIDENT_CPU_ISA=generic) use
// Eigen's product instead (gemm_eigen, also kept for comparison: it is
// what bench/gemm_bench.cpp measures the packed kernel against). gemm_batched runs whole products
// per thread when the batch is large or each product small, otherwise one threaded product
// after the other.
#include "trident/kernels/cpu/gemm.hpp"

#include <omp.h>

#include <stdexcept>
#include <string>

#include "cpu_common.hpp"
#include "gemm_packed.hpp"

namespace trident::kernels::cpu {
namespace {

using detail::ConstMatrixMap;
using detail::MatrixMap;

template <typename T, typename OpA, typename OpB>
void multiply_into(MatrixMap<T>& c, const OpA& a, const OpB& b, T alpha, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;  // overwrites: NaN/garbage in C never reaches the result
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

void check_ld(const char* name, int64_t ld, int64_t cols) {
  if (ld < cols) {
    throw std::invalid_argument(std::string("gemm: leading dimension ") + name + " = " +
                                std::to_string(ld) + " is smaller than the " +
                                std::to_string(cols) + " columns stored per row");
  }
}

// M, N > 0. Returns true when there is no product to compute (K == 0 or alpha == 0), after
// setting C = beta C (beta == 0 overwrites: NaN/garbage in C never reaches the result).
template <typename T>
bool scale_only(int64_t M, int64_t N, int64_t K, T alpha, T beta, T* C, int64_t ldc) {
  if (K != 0 && alpha != T(0)) return false;
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) {
    c.setZero();
  } else if (beta != T(1)) {
    c *= beta;
  }
  return true;
}

template <typename T>
void eigen_product(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  ConstMatrixMap<T> a(A, transA ? K : M, transA ? M : K, Eigen::OuterStride<>(lda));
  ConstMatrixMap<T> b(B, transB ? N : K, transB ? K : N, Eigen::OuterStride<>(ldb));
  if (!transA && !transB) {
    multiply_into(c, a, b, alpha, beta);
  } else if (!transA && transB) {
    multiply_into(c, a, b.transpose(), alpha, beta);
  } else if (transA && !transB) {
    multiply_into(c, a.transpose(), b, alpha, beta);
  } else {
    multiply_into(c, a.transpose(), b.transpose(), alpha, beta);
  }
}

// One product on checked arguments: the packed kernel where the CPU has it.
template <typename T>
void gemm_one(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
              int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0 || scale_only(M, N, K, alpha, beta, C, ldc)) return;
  if (detail::gemm_packed_available()) {
    detail::gemm_packed_product(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    eigen_product(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

void check_args(bool transA, bool transB, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                int64_t ldc) {
  if (M < 0 || N < 0 || K < 0) {
    throw std::invalid_argument("gemm: negative size M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K));
  }
  if (M == 0 || N == 0) return;
  check_ld("ldc", ldc, N);
  if (K == 0) return;
  check_ld("lda", lda, transA ? M : K);
  check_ld("ldb", ldb, transB ? K : N);
}

}  // namespace

template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_args(transA, transB, M, N, K, lda, ldb, ldc);
  gemm_one(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
void gemm_eigen(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_args(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0 || scale_only(M, N, K, alpha, beta, C, ldc)) return;
  eigen_product(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool gemm_is_packed() {
  return detail::gemm_packed_available();
}

template <typename T>
void gemm_batched(bool transA, bool transB, int64_t batch, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, int64_t strideA, const T* B, int64_t ldb,
                  int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC) {
  check_args(transA, transB, M, N, K, lda, ldb, ldc);
  if (batch <= 0) return;
  // Products below ~128^3 multiply-adds gain little from threading inside the product; larger
  // ones are split over the batch only when that balances the threads well.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool small = M * N * K <= int64_t{128} * 128 * 128;
  const bool over_batch =
      threads > 1 && batch > 1 && (small || batch % threads == 0 || batch >= 4 * threads);
  const auto one = [&](int64_t i) {
    gemm_one(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
             C + i * strideC, ldc);
  };
  if (over_batch) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);  // each product threads itself
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);
template void gemm_eigen<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                const float*, int64_t, float, float*, int64_t);
template void gemm_eigen<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                 int64_t, const double*, int64_t, double, double*, int64_t);
template void gemm_batched<float>(bool, bool, int64_t, int64_t, int64_t, int64_t, float,
                                  const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                                  float, float*, int64_t, int64_t);
template void gemm_batched<double>(bool, bool, int64_t, int64_t, int64_t, int64_t, double,
                                   const double*, int64_t, int64_t, const double*, int64_t, int64_t,
                                   double, double*, int64_t, int64_t);

}  // namespace trident::kernels::cpu
