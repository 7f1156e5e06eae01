// gemm and gemm_batched against a naive double-precision triple loop, over every transpose
// combination, padded leading dimensions, alpha/beta, and sizes that take Eigen's small
// (coefficient) and blocked, multi-threaded paths.
#include <limits>
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/gemm.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

namespace {

// Reference C = alpha op(A) op(B) + beta C in double; beta == 0 ignores C's contents.
template <typename T>
std::vector<double> reference_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                                   const T* A, int64_t lda, const T* B, int64_t ldb, double beta,
                                   const T* C, int64_t ldc) {
  std::vector<double> out(static_cast<size_t>(M * ldc));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= N) {  // padding past N must be left alone
        out[i * ldc + j] = C[i * ldc + j];
        continue;
      }
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      out[i * ldc + j] = alpha * acc + (beta == 0 ? 0.0 : beta * C[i * ldc + j]);
    }
  }
  return out;
}

template <typename T>
void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, T beta, int64_t pad,
                double rtol) {
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  auto A = random_vector<T>((ta ? K : M) * lda, 1);
  auto B = random_vector<T>((tb ? N : K) * ldb, 2);
  auto C = random_vector<T>(M * ldc, 3);
  if (beta == T(0)) {  // C must be overwritten, not scaled: NaN may not leak through
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
    }
  }
  const auto want =
      reference_gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  cpu::gemm<T>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  require_close(C, want, rtol, rtol, "gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
}

}  // namespace

TEMPLATE_TEST_CASE("gemm matches a naive triple loop for every transpose combination",
                   "[kernels][gemm]", float, double) {
  const double rtol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      check_gemm<TestType>(ta, tb, 7, 13, 5, TestType(1), TestType(0), 0, rtol);
      check_gemm<TestType>(ta, tb, 7, 13, 5, TestType(0.7), TestType(0.5), 3, rtol);
      check_gemm<TestType>(ta, tb, 7, 13, 5, TestType(-1.3), TestType(1), 2, rtol);
      check_gemm<TestType>(ta, tb, 1, 1, 1, TestType(2), TestType(-1), 0, rtol);
    }
  }
}

TEMPLATE_TEST_CASE("gemm on blocked sizes (Eigen's threaded path)", "[kernels][gemm]", float,
                   double) {
  const double rtol = std::is_same<TestType, float>::value ? 5e-5 : 1e-11;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      check_gemm<TestType>(ta, tb, 157, 131, 190, TestType(0.9), TestType(0), 5, rtol);
    }
  }
  check_gemm<TestType>(false, true, 129, 67, 300, TestType(1), TestType(0.25), 1, rtol);
}

TEST_CASE("gemm with K = 0 scales C by beta", "[kernels][gemm]") {
  std::vector<double> C = {1, 2, 3, 4, 5, 6};
  cpu::gemm<double>(false, false, 2, 3, 0, 1.0, nullptr, 0, nullptr, 3, 0.5, C.data(), 3);
  require_close(C, std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3}, 0, 0, "K=0 beta=0.5");
  cpu::gemm<double>(false, false, 2, 3, 0, 1.0, nullptr, 0, nullptr, 3, 0.0, C.data(), 3);
  require_close(C, std::vector<double>(6, 0.0), 0, 0, "K=0 beta=0");
}

TEST_CASE("gemm rejects a leading dimension smaller than a row", "[kernels][gemm]") {
  std::vector<float> A(35), B(65), C(91);
  REQUIRE_THROWS_AS(
      cpu::gemm<float>(false, false, 7, 13, 5, 1.f, A.data(), 4, B.data(), 13, 0.f, C.data(), 13),
      std::invalid_argument);
  REQUIRE_THROWS_AS(
      cpu::gemm<float>(false, false, 7, 13, 5, 1.f, A.data(), 5, B.data(), 13, 0.f, C.data(), 12),
      std::invalid_argument);
}

namespace {

template <typename T>
void check_batched(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, T beta,
                   double rtol) {
  const int64_t lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 1;
  // Matrices separated by gaps, so a stride bug reads or writes the wrong matrix.
  const int64_t sA = (ta ? K : M) * lda + 3, sB = (tb ? N : K) * ldb + 5, sC = M * ldc + 7;
  auto A = random_vector<T>(batch * sA, 11);
  auto B = random_vector<T>(batch * sB, 12);
  auto C = random_vector<T>(batch * sC, 13);
  std::vector<double> want(C.begin(), C.end());
  for (int64_t i = 0; i < batch; ++i) {
    const auto one = reference_gemm(ta, tb, M, N, K, 0.8, A.data() + i * sA, lda, B.data() + i * sB,
                                    ldb, beta, C.data() + i * sC, ldc);
    std::copy(one.begin(), one.end(), want.begin() + i * sC);
  }
  cpu::gemm_batched<T>(ta, tb, batch, M, N, K, T(0.8), A.data(), lda, sA, B.data(), ldb, sB, beta,
                       C.data(), ldc, sC);
  require_close(C, want, rtol, rtol, "gemm_batched batch=" + std::to_string(batch));
}

}  // namespace

TEMPLATE_TEST_CASE("gemm_batched matches per-matrix references", "[kernels][gemm]", float, double) {
  const double rtol = std::is_same<TestType, float>::value ? 5e-5 : 1e-11;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Many small products: split over the batch.
      check_batched<TestType>(ta, tb, 9, 7, 13, 5, TestType(0), rtol);
      check_batched<TestType>(ta, tb, 6, 5, 3, 11, TestType(0.5), rtol);
    }
  }
  // A few large products: Eigen threads each one (3 is not a multiple of the thread count).
  check_batched<TestType>(false, true, 3, 140, 133, 150, TestType(0), rtol);
  // Large products, batch a multiple of the threads: split over the batch.
  check_batched<TestType>(true, false, 4, 131, 129, 140, TestType(1), rtol);
}
