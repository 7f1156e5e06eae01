// The CUDA runtime side of core: device errors, copies, the caching allocator and the
// validation of token ids and targets on the device.
#include <catch2/catch.hpp>

#include <string>

#include "gpu_test_util.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/ops.hpp"

namespace trident::gpu_test {

TEST_CASE("a CUDA device index past the last one gives one clear trident::Error", "[runtime]") {
  const int n = cuda_device_count_or_zero();
  REQUIRE(n > 0);
  const std::string name = "cuda:" + std::to_string(n);
  try {
    backend_for(Device::cuda(n));
    FAIL("no error for " << name);
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find(name) != std::string::npos);
    CHECK(msg.find("visible") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  CHECK_THROWS_AS(Tensor::empty({4}, DType::F32, Device::cuda(n)), Error);
  CHECK_NOTHROW(backend_for(gpu()));
}

TEST_CASE("host <-> device copies and device views round-trip", "[runtime]") {
  std::mt19937_64 rng(fresh_seed());
  const std::vector<float> x = normal(1234, rng);
  const Tensor h = Tensor::from_vector(x, {2, 617});
  const Tensor d = h.to(gpu());
  CHECK(d.device() == gpu());
  CHECK(d.to_vector<float>() == x);
  const Tensor t = d.transpose(0, 1).contiguous();  // copy_strided on the device
  const Tensor t_ref = h.transpose(0, 1).contiguous();
  CHECK(t.to_vector<float>() == t_ref.to_vector<float>());
  const Tensor c = d.clone();  // device-to-device copy
  CHECK(c.to_vector<float>() == x);
  CHECK(d.to(DType::BF16).to(DType::F32).to_vector<float>()[5] == round_bf16(x[5]));
  CHECK(d.slice(1, 3, 7).contiguous().to_vector<float>() ==
        h.slice(1, 3, 7).contiguous().to_vector<float>());  // a strided 2x4 gather
}

TEST_CASE("the CUDA allocator caches blocks and reports its peak", "[runtime]") {
  Allocator& a = allocator_for(gpu());
  a.reset_peak();
  const AllocatorStats before = a.stats();
  {
    Tensor x = Tensor::empty({1 << 20}, DType::F32, gpu());
    CHECK(a.stats().in_use_bytes >= before.in_use_bytes + (size_t(4) << 20));
  }
  const uint64_t allocs = a.stats().system_allocs;
  {
    Tensor y = Tensor::empty({1 << 20}, DType::F32, gpu());  // reuses the freed block
    y.fill_(1.0);
  }
  CHECK(a.stats().system_allocs == allocs);
  CHECK(a.stats().peak_bytes >= before.in_use_bytes + (size_t(4) << 20));
}

TEST_CASE("token ids and targets are validated on the device", "[runtime]") {
  const Tensor table = Tensor::zeros({10, 4}, DType::F32, gpu());
  const Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, 12, 3}, {4}, gpu());
  try {
    ops::embedding(ids, table);
    FAIL("no error for token id 12");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("token id 12 at position 2") != std::string::npos);
  }
  const Tensor logits = Tensor::zeros({3, 5}, DType::F32, gpu());
  const Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 7, -1}, {3}, gpu());
  try {
    ops::cross_entropy(logits, targets);
    FAIL("no error for target 7");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("target 7 at position 1") != std::string::npos);
  }
  // Ignored targets (< 0) are fine: mean over the two valid rows of uniform logits = log 5.
  const Tensor ok = Tensor::from_vector(std::vector<int32_t>{0, 4, -1}, {3}, gpu());
  CHECK(ops::cross_entropy(logits, ok).item() == Approx(std::log(5.0)).epsilon(1e-6));
}

}  // namespace trident::gpu_test
