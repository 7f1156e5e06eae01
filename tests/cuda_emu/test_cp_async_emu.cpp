// The asynchronous copies of kernels/cuda/cp_async.cuh under the CUDA emulation
// (emu/src/launch.cpp): a double-buffered tile loop reads what it copied, bitwise; a tile read
// before its group is waited for still holds the old shared memory (the emulation makes a missing
// wait visible); wait<1> completes all but the newest group and never an uncommitted copy; and
// the faults: a misaligned source, a destination outside shared memory.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"
#include "cp_async.cuh"
#include "emu_test_util.hpp"
#include "trident_cuda_emu.hpp"

namespace {

using emu_test::check;
using emu_test::DeviceArray;
using emu_test::expect_fault;
namespace async = trident::kernels::cuda::async;

constexpr int kTile = 256;  // floats per tile: 64 threads x 16 bytes

// out[t] = sum of the tiles of `in` (tiles x kTile floats), loaded through two shared buffers:
// tile i + 1 is in flight while tile i is summed.
__global__ void double_buffer_kernel(const float* in, float* out, int tiles) {
  TRIDENT_DYNAMIC_SHARED(float, smem);
  const int t = threadIdx.x;
  float acc[4] = {0, 0, 0, 0};
  async::cp_async_16(smem + 4 * t, in + 4 * t);
  async::cp_async_commit();
  for (int i = 0; i < tiles; ++i) {
    float* next = smem + ((i + 1) % 2) * kTile;
    if (i + 1 < tiles) async::cp_async_16(next + 4 * t, in + (i + 1) * kTile + 4 * t);
    async::cp_async_commit();
    async::cp_async_wait<1>();  // tile i is here, tile i + 1 may not be
    __syncthreads();
    const float* cur = smem + (i % 2) * kTile;
    for (int j = 0; j < 4; ++j) acc[j] += cur[(4 * t + 64 * j) % kTile];
    __syncthreads();  // everyone is done with `cur` before it is overwritten
  }
  for (int j = 0; j < 4; ++j) out[4 * t + j] = acc[j];
}

// Copies 16 bytes per thread and reads them back at three points: before any wait, after
// wait<1> with a newer committed group and an uncommitted copy in flight, after wait<0>.
__global__ void wait_points_kernel(const float* in, float* seen) {
  TRIDENT_DYNAMIC_SHARED(float, smem);
  const int t = threadIdx.x;
  async::cp_async_16(smem + 4 * t, in + 4 * t);  // group 1
  async::cp_async_commit();
  async::cp_async_16(smem + 128 + 4 * t, in + 128 + 4 * t);  // group 2
  async::cp_async_commit();
  async::cp_async_16(smem + 256 + 4 * t, in + 256 + 4 * t);  // never committed
  seen[t] = smem[4 * t];  // before any wait: the NaN the block started with
  async::cp_async_wait<1>();
  seen[32 + t] = smem[4 * t];        // group 1: done
  seen[64 + t] = smem[128 + 4 * t];  // group 2: still in flight
  async::cp_async_wait<0>();
  seen[96 + t] = smem[128 + 4 * t];   // group 2: done
  seen[128 + t] = smem[256 + 4 * t];  // uncommitted: no wait completes it
}

enum class Misuse { MisalignedSource, GlobalDestination };

__global__ void misuse_kernel(const float* in, float* out, Misuse m) {
  TRIDENT_DYNAMIC_SHARED(float, smem);
  if (m == Misuse::MisalignedSource) async::cp_async_16(smem, in + 1);
  if (m == Misuse::GlobalDestination) async::cp_async_16(out, in);
}

}  // namespace

TEST_CASE("cp.async: a double-buffered tile loop sums what it copied", "[emu][cp_async]") {
  const int tiles = 5;
  std::vector<float> h(tiles * kTile);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 97) * 0.25f;
  DeviceArray<float> in(h), out(kTile);
  TRIDENT_LAUNCH(double_buffer_kernel, 1, 64, 2 * kTile * sizeof(float), nullptr)
  (in.p, out.p, tiles);
  check(cudaGetLastError());
  check(cudaDeviceSynchronize());
  const std::vector<float> got = out.get();
  for (int t = 0; t < 64; ++t) {
    for (int j = 0; j < 4; ++j) {
      float want = 0;
      for (int i = 0; i < tiles; ++i) want += h[i * kTile + (4 * t + 64 * j) % kTile];
      CHECK(got[4 * t + j] == want);
    }
  }
}

TEST_CASE("cp.async: shared memory changes only when the copy's group is waited for",
          "[emu][cp_async]") {
  std::vector<float> h(384);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i) + 1;
  DeviceArray<float> in(h), seen(160);
  TRIDENT_LAUNCH(wait_points_kernel, 1, 32, 384 * sizeof(float), nullptr)(in.p, seen.p);
  check(cudaGetLastError());
  check(cudaDeviceSynchronize());
  const std::vector<float> s = seen.get();
  for (int t = 0; t < 32; ++t) {
    INFO("thread " << t);
    CHECK(std::isnan(s[t]));
    CHECK(s[32 + t] == h[4 * t]);
    CHECK(std::isnan(s[64 + t]));
    CHECK(s[96 + t] == h[128 + 4 * t]);
    CHECK(std::isnan(s[128 + t]));
  }
}

TEST_CASE("cp.async faults on a misaligned source and a destination outside shared memory",
          "[emu][cp_async]") {
  DeviceArray<float> in(64), out(64);
  TRIDENT_LAUNCH(misuse_kernel, 1, 32, 256, nullptr)(in.p, out.p, Misuse::MisalignedSource);
  std::string msg = expect_fault();
  CHECK(msg.find("not aligned") != std::string::npos);
  CHECK(msg.find("test_cp_async_emu.cpp") != std::string::npos);
  TRIDENT_LAUNCH(misuse_kernel, 1, 32, 256, nullptr)(in.p, out.p, Misuse::GlobalDestination);
  msg = expect_fault();
  CHECK(msg.find("outside the block's shared memory") != std::string::npos);
}
