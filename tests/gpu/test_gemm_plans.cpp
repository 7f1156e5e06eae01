// The cuBLASLt plan cache (kernels/cuda/matmul.hpp): a repeated shape reuses its descriptors and
// algorithm, and everything that must not be reused is part of the key or set per call (the
// pointers, alpha/beta, the bias, the operands' alignment, the workspace size).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

#include "gpu_test_util.hpp"
#include "trident/core/cuda.hpp"
#include "trident/kernels/cuda/matmul.hpp"

namespace trident::gpu_test {
namespace {

namespace kc = kernels::cuda;

struct LtFixture {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  static constexpr size_t kWorkspace = 1 << 20;
  cudaStream_t stream = static_cast<cudaStream_t>(cuda_compute_stream(0));
  LtFixture() {
    backend_for(gpu());  // makes device 0 current and creates its compute stream
    REQUIRE(cublasLtCreate(&handle) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(cudaMalloc(&workspace, kWorkspace) == cudaSuccess);
  }
  ~LtFixture() {
    cudaStreamSynchronize(stream);
    cudaFree(workspace);
    cublasLtDestroy(handle);
  }
};

// C (M x N) = A (M x K) B (K x N) + bias, row-major, in double.
std::vector<float> reference(const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<float>* bias, int64_t M, int64_t N, int64_t K,
                             int64_t lda) {
  std::vector<float> c(M * N);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = bias != nullptr ? (*bias)[j] : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += double(a[i * lda + k]) * b[k * N + j];
      c[i * N + j] = static_cast<float>(acc);
    }
  }
  return c;
}

}  // namespace

TEST_CASE("cuBLASLt plans are built once per shape and reused with the call's pointers and bias",
          "[runtime]") {
  LtFixture f;
  std::mt19937_64 rng(test_seed());
  INFO("seed " << test_seed());
  const int64_t M = 6, N = 10, K = 7;
  kc::GemmPlanCache cache;
  const auto product = [&](const std::vector<float>& a, const std::vector<float>& b,
                           const std::vector<float>* bias, int64_t a_offset, size_t ws,
                           int64_t bias_offset = 0) {
    const Tensor da = upload(a, DType::F32), db = upload(b, DType::F32);
    std::vector<float> bias_values(bias_offset, 0.0f);
    bias_values.insert(bias_values.end(), N, 0.0f);
    if (bias != nullptr) std::copy(bias->begin(), bias->end(), bias_values.begin() + bias_offset);
    const Tensor dbias = upload(bias_values, DType::F32);
    Tensor dc = poisoned(M * N, DType::F32);
    kc::GemmArgs g;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = static_cast<const float*>(da.raw_data()) + a_offset;
    g.lda = K;
    g.B = db.raw_data();
    g.ldb = N;
    g.C = dc.raw_data();
    g.ldc = N;
    if (bias != nullptr) {
      g.epilogue = kc::GemmEpilogue::Bias;
      g.bias = static_cast<const float*>(dbias.raw_data()) + bias_offset;
    }
    cache.gemm(f.handle, kc::ScalarType::F32, g, f.workspace, ws, f.stream);
    return download(dc);
  };
  const auto a1 = normal(M * K + 1, rng), b1 = normal(K * N, rng);
  const auto a2 = normal(M * K + 1, rng), b2 = normal(K * N, rng);
  const auto bias1 = normal(N, rng), bias2 = normal(N, rng);

  CHECK(rel_error(product(a1, b1, nullptr, 0, f.kWorkspace),
                  reference(a1, b1, nullptr, M, N, K, K)) < 1e-6);
  CHECK(cache.stats().misses == 1);
  // Same shape, other buffers and values: the plan is reused and reads the new operands.
  CHECK(rel_error(product(a2, b2, nullptr, 0, f.kWorkspace),
                  reference(a2, b2, nullptr, M, N, K, K)) < 1e-6);
  CHECK(cache.stats().misses == 1);
  CHECK(cache.stats().hits == 1);
  // A bias epilogue is another plan; its bias pointer is the call's, not the first call's.
  CHECK(rel_error(product(a1, b1, &bias1, 0, f.kWorkspace), reference(a1, b1, &bias1, M, N, K, K)) <
        1e-6);
  CHECK(rel_error(product(a1, b1, &bias2, 0, f.kWorkspace), reference(a1, b1, &bias2, M, N, K, K)) <
        1e-6);
  CHECK(cache.stats().misses == 2);
  // The heuristic reads the bias pointer's alignment too: a 4-byte aligned bias is a new plan.
  CHECK(rel_error(product(a1, b1, &bias2, 0, f.kWorkspace, 1),
                  reference(a1, b1, &bias2, M, N, K, K)) < 1e-6);
  CHECK(cache.stats().misses == 3);
  // A at a 4-byte offset: an algorithm chosen for 256-byte aligned operands would be refused
  // (the emulation checks the alignment the heuristic was told), so it needs its own plan.
  const std::vector<float> a1_shifted(a1.begin() + 1, a1.end());
  CHECK(rel_error(product(a1, b1, nullptr, 1, f.kWorkspace),
                  reference(a1_shifted, b1, nullptr, M, N, K, K)) < 1e-6);
  CHECK(cache.stats().misses == 4);
  // A smaller workspace limit is a different choice too.
  CHECK(rel_error(product(a1, b1, nullptr, 0, 0), reference(a1, b1, nullptr, M, N, K, K)) < 1e-6);
  CHECK(cache.stats().misses == 5);
  CHECK(cache.stats().plans == 5);
  cache.clear();
  CHECK(cache.stats().plans == 0);
  REQUIRE(cudaStreamSynchronize(f.stream) == cudaSuccess);
}

TEST_CASE("a full plan cache starts again instead of growing", "[runtime]") {
  LtFixture f;
  kc::GemmPlanCache cache(3);
  const Tensor a = upload(std::vector<float>(64, 1.0f), DType::F32);
  const Tensor b = upload(std::vector<float>(64, 2.0f), DType::F32);
  Tensor c = poisoned(64, DType::F32);
  for (int64_t n = 1; n <= 5; ++n) {
    kc::GemmArgs g;
    g.M = 2;
    g.N = n;
    g.K = 3;
    g.A = a.raw_data();
    g.lda = 3;
    g.B = b.raw_data();
    g.ldb = n;
    g.C = c.raw_data();
    g.ldc = n;
    cache.gemm(f.handle, kc::ScalarType::F32, g, f.workspace, f.kWorkspace, f.stream);
    CHECK(cache.stats().plans <= 3);
    const std::vector<float> out = download(c);
    for (int64_t i = 0; i < 2 * n; ++i) CHECK(out[i] == 6.0f);
  }
  CHECK(cache.stats().misses == 5);
}

}  // namespace trident::gpu_test
