// The CUDA runtime side of core: device errors, copies, the caching allocator (with its
// stream rule) and where bad token ids are caught (on the host, at load).
#include <cuda_runtime_api.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "gpu_test_util.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/ops.hpp"
#include "trident/io/data.hpp"

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
  std::mt19937_64 rng(test_seed());
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

TEST_CASE("a block used on another stream is not handed out again before that stream is done",
          "[runtime]") {
  auto& a = dynamic_cast<CachingAllocator&>(allocator_for(gpu()));
  cudaStream_t side = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking) == cudaSuccess);
  // A host function holds the side stream until `open`: the "collective" still runs.
  std::atomic<bool> open{false};
  REQUIRE(cudaLaunchHostFunc(
              side,
              [](void* flag) {
                while (!static_cast<std::atomic<bool>*>(flag)->load())
                  std::this_thread::sleep_for(std::chrono::milliseconds(1));
              },
              &open) == cudaSuccess);
  const int64_t n = 5 << 16;  // a size no other test allocates
  const void* freed = nullptr;
  {
    Tensor t = Tensor::empty({n}, DType::F32, gpu());
    freed = t.raw_data();
    a.record_stream(static_cast<const char*>(t.raw_data()) + 64, side);  // a view's pointer
  }
  CHECK(a.pending_blocks() == 1);
  {
    Tensor u = Tensor::empty({n}, DType::F32, gpu());
    CHECK(u.raw_data() != freed);
    CHECK(a.pending_blocks() == 1);
  }
  open = true;
  REQUIRE(cudaStreamSynchronize(side) == cudaSuccess);
  const uint64_t allocs = a.stats().system_allocs;
  Tensor v = Tensor::empty({n}, DType::F32, gpu());  // polls the event: the block is free again
  Tensor w = Tensor::empty({n}, DType::F32, gpu());
  CHECK(a.pending_blocks() == 0);
  CHECK(a.stats().system_allocs == allocs);
  CHECK((v.raw_data() == freed || w.raw_data() == freed));
  cudaStreamDestroy(side);
}

TEST_CASE("bad token ids are reported when the batch is loaded, before it reaches the device",
          "[runtime]") {
  // The device kernels do not report bad ids (that would be a read-back per micro-batch): the
  // loader checks every token it reads against the vocabulary on the host, naming the source
  // and the position.
  std::vector<int32_t> tokens(64, 3);
  tokens[37] = 12;
  try {
    const data::TokenLoader loader(
        data::TokenStream{data::memory_token_source(tokens, "tokens.bin", 10)}, 2, 8);
    loader.batch(0, gpu());
    loader.batch(1, gpu());
    loader.batch(2, gpu());
    FAIL("no error for token 12");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("tokens.bin: token 12 at position 37") != std::string::npos);
    CHECK(msg.find("outside the model's vocabulary of 10") != std::string::npos);
  }
  // In range, the batch is uploaded and the step reads nothing back: ignored targets (< 0) are
  // fine, and the mean over the two valid rows of uniform logits is log 5.
  const Tensor logits = Tensor::zeros({3, 5}, DType::F32, gpu());
  const Tensor ok = Tensor::from_vector(std::vector<int32_t>{0, 4, -1}, {3}, gpu());
  CHECK(ops::cross_entropy(logits, ok).item() == Approx(std::log(5.0)).epsilon(1e-6));
}

}  // namespace trident::gpu_test
