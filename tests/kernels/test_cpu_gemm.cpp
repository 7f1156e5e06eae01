// gemm and gemm_batched against a naive double-precision triple loop, over every transpose
// combination, padded leading dimensions, alpha/beta, partial register tiles, several K blocks,
// B packed in column chunks, and threads (whose count must not change a bit of the result);
// gemm_eigen (the fallback without AVX2/FMA) against the same reference.
#include <limits>
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/gemm.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::OmpThreads;
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
using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
                        int64_t, T, T*, int64_t);

template <typename T>
void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, T beta, int64_t pad,
                double rtol, GemmFn<T> fn = cpu::gemm<T>) {
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
  fn(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  require_close(C, want, rtol, rtol,
                "gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " M=" +
                    std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
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

TEMPLATE_TEST_CASE("gemm on blocked sizes, threaded", "[kernels][gemm]", float, double) {
  const double rtol = std::is_same<TestType, float>::value ? 5e-5 : 1e-11;
  OmpThreads threads(2);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Partial tiles in both dimensions (157 = 26 * 6 + 1 rows, 131 = 8 * 16 + 3 columns).
      check_gemm<TestType>(ta, tb, 157, 131, 190, TestType(0.9), TestType(0), 5, rtol);
      // K = 600: several K blocks, beta applied by the first only.
      check_gemm<TestType>(ta, tb, 50, 37, 600, TestType(-0.6), TestType(0.5), 2, rtol);
    }
  }
  check_gemm<TestType>(false, true, 129, 67, 300, TestType(1), TestType(0.25), 1, rtol);
  // More row blocks (of at most 144 rows) than one, fewer than 4 per thread: N is split too.
  check_gemm<TestType>(true, false, 301, 200, 64, TestType(1), TestType(1), 0, rtol);
  // A single row and a single column.
  check_gemm<TestType>(false, false, 1, 300, 250, TestType(1), TestType(0), 0, rtol);
  check_gemm<TestType>(false, true, 300, 1, 250, TestType(1), TestType(0), 0, rtol);
}

TEST_CASE("gemm packs a large B in column chunks", "[kernels][gemm]") {
  // K * N = 4.41M elements exceeds the 4M-element packing buffer: two column chunks.
  OmpThreads threads(2);
  check_gemm<float>(false, true, 7, 2100, 2100, 1.f, 0.f, 0, 1e-4);
  check_gemm<float>(true, false, 13, 2100, 2100, 0.5f, 2.f, 3, 1e-4);
}

// The packed kernels (cpu_isa() avx2 or avx512) promise the same bits for any thread count;
// Eigen's product (TRIDENT_CPU_ISA=generic, CPUs without AVX2) only the same values within 1e-5.
TEMPLATE_TEST_CASE("gemm gives bit-identical results on 1, 2 and 3 threads", "[kernels][gemm]",
                   float, double) {
  using T = TestType;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t M = 203, N = 150, K = 520;
      const auto A = random_vector<T>(M * K, 31), B = random_vector<T>(K * N, 32);
      const auto C0 = random_vector<T>(M * N, 33);
      std::vector<T> C[3];
      for (int threads = 1; threads <= 3; ++threads) {
        OmpThreads scope(threads);
        C[threads - 1] = C0;
        cpu::gemm<T>(ta, tb, M, N, K, T(0.7), A.data(), ta ? M : K, B.data(), tb ? K : N, T(0.3),
                     C[threads - 1].data(), N);
      }
      INFO("ta=" << ta << " tb=" << tb);
      if (!cpu::gemm_is_packed()) {  // Eigen's threaded product blocks K by thread count
        require_close(C[1], C[0], 1e-5, 1e-5, "Eigen's product on 2 threads");
        require_close(C[2], C[0], 1e-5, 1e-5, "Eigen's product on 3 threads");
        continue;
      }
      REQUIRE(C[0] == C[1]);
      REQUIRE(C[0] == C[2]);
    }
  }
}

TEMPLATE_TEST_CASE("gemm_eigen (the fallback path) matches the triple loop", "[kernels][gemm]",
                   float, double) {
  const double rtol = std::is_same<TestType, float>::value ? 5e-5 : 1e-11;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      check_gemm<TestType>(ta, tb, 7, 13, 5, TestType(0.7), TestType(0.5), 3, rtol,
                           cpu::gemm_eigen<TestType>);
      check_gemm<TestType>(ta, tb, 157, 131, 190, TestType(0.9), TestType(0), 5, rtol,
                           cpu::gemm_eigen<TestType>);
    }
  }
  std::vector<double> C = {1, 2, 3, 4, 5, 6};
  cpu::gemm_eigen<double>(false, false, 2, 3, 0, 1.0, nullptr, 0, nullptr, 3, 0.5, C.data(), 3);
  require_close(C, std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3}, 0, 0, "K=0 beta=0.5");
}

TEST_CASE("gemm with alpha = 0 scales C by beta and does not read A or B", "[kernels][gemm]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> A(6, nan), B(6, nan), C = {1, 2, 3, 4};
  cpu::gemm<float>(false, false, 2, 2, 3, 0.f, A.data(), 3, B.data(), 2, 2.f, C.data(), 2);
  require_close(C, std::vector<float>{2, 4, 6, 8}, 0, 0, "alpha=0 beta=2");
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
  OmpThreads threads(2);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Many small products: split over the batch.
      check_batched<TestType>(ta, tb, 9, 7, 13, 5, TestType(0), rtol);
      check_batched<TestType>(ta, tb, 6, 5, 3, 11, TestType(0.5), rtol);
    }
  }
  // A few large products: each one threaded (3 is not a multiple of the thread count).
  check_batched<TestType>(false, true, 3, 140, 133, 150, TestType(0), rtol);
  // Large products, batch a multiple of the threads: split over the batch.
  check_batched<TestType>(true, false, 4, 131, 129, 140, TestType(1), rtol);
}
