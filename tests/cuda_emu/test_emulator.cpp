// The CUDA emulation's own contract: kernels run with CUDA's thread/block coordinates, shared
// memory and warp calls; results that depend on thread order, barriers or shuffles that not all
// threads reach, bad launch configurations and uninitialised shared memory are caught; streams
// run asynchronously and are ordered only by events and the legacy stream's rules.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "common.cuh"
#include "emu_test_util.hpp"
#include "trident_cuda_emu.hpp"

namespace {

using cuemu::ThreadOrder;

using emu_test::check;
using emu_test::DeviceArray;
using emu_test::expect_fault;

__global__ void coords_kernel(int* out) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  out[b * threads + t] = b * 1000 + t;
}

// Sum of 256 values per block through shared memory and a warp shuffle tree.
__global__ void block_sum_kernel(const float* in, float* out) {
  TRIDENT_SHARED(float, partial, [8]);
  float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float w = threadIdx.x < 8 ? partial[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) w += __shfl_down_sync(0xffffffffu, w, o);
    if (threadIdx.x == 0) out[blockIdx.x] = w;
  }
}

// Each thread reads its neighbour's shared slot; `with_barrier` false is a race.
__global__ void neighbour_kernel(float* out, bool with_barrier) {
  TRIDENT_SHARED(float, sh, [64]);
  sh[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (with_barrier) __syncthreads();
  out[threadIdx.x] = sh[(threadIdx.x + 1) % 64];
}

__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void exit_before_barrier_kernel(float* out, int n) {
  if (static_cast<int>(threadIdx.x) >= n) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void partial_shuffle_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void read_uninitialised_shared_kernel(float* out) {
  TRIDENT_SHARED(float, sh, [32]);
  out[threadIdx.x] = sh[threadIdx.x];
}

__global__ void dynamic_shared_kernel(float* out, int n) {
  TRIDENT_DYNAMIC_SHARED(float, sh);
  for (int i = threadIdx.x; i < n; i += blockDim.x) sh[i] = static_cast<float>(i);
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += sh[i];
  if (threadIdx.x == 0) out[0] = s;
}

__global__ void ballot_kernel(unsigned* out) {
  const unsigned b = __ballot_sync(0xffffffffu, threadIdx.x % 3 == 0);
  const int all = __all_sync(0xffffffffu, threadIdx.x < 32);
  const int any = __any_sync(0xffffffffu, threadIdx.x == 7);
  if (threadIdx.x == 0) {
    out[0] = b;
    out[1] = static_cast<unsigned>(all);
    out[2] = static_cast<unsigned>(any);
  }
}

__global__ void atomic_count_kernel(int* counter) {
  atomicAdd(counter, 1);
}

__global__ void scale_kernel(float* x, int n, float a) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] *= a;
}

void host_sleep_then_write(void* p) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  *static_cast<float*>(p) = 42.0f;
}

struct OrderGuard {
  ThreadOrder saved = cuemu::thread_order();
  ~OrderGuard() { cuemu::set_thread_order(saved); }
};

}  // namespace

TEST_CASE("launches see CUDA's thread and block coordinates", "[cuda-emu][emulator]") {
  DeviceArray<int> out(2 * 3 * 2 * 4 * 2 * 3);
  TRIDENT_LAUNCH(coords_kernel, dim3(2, 3, 2), dim3(4, 2, 3), 0, nullptr)(out.p);
  check(cudaGetLastError());
  const std::vector<int> h = out.get();
  for (int b = 0; b < 12; ++b) {
    for (int t = 0; t < 24; ++t) REQUIRE(h[b * 24 + t] == b * 1000 + t);
  }
}

TEST_CASE("a correct kernel gives the same bits in every thread order", "[cuda-emu][emulator]") {
  OrderGuard guard;
  const int blocks = 5;
  std::vector<float> in(blocks * 256);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.37f * static_cast<float>(i));
  DeviceArray<float> d_in(in.size()), d_out(blocks);
  check(cudaMemcpy(d_in.p, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice));
  std::vector<std::vector<float>> results;
  for (ThreadOrder o : {ThreadOrder::Forward, ThreadOrder::Reverse, ThreadOrder::Shuffle}) {
    cuemu::set_thread_order(o, 7);
    TRIDENT_LAUNCH(block_sum_kernel, blocks, 256, 0, nullptr)(d_in.p, d_out.p);
    results.push_back(d_out.get());
  }
  for (int b = 0; b < blocks; ++b) {
    double ref = 0;
    for (int i = 0; i < 256; ++i) ref += in[b * 256 + i];
    CHECK(results[0][b] == Approx(ref).margin(1e-4));
    CHECK(results[1][b] == results[0][b]);
    CHECK(results[2][b] == results[0][b]);
  }
}

TEST_CASE("a missing __syncthreads changes the result with the thread order",
          "[cuda-emu][emulator]") {
  OrderGuard guard;
  DeviceArray<float> out(64);
  std::vector<std::vector<float>> racy, fixed;
  for (ThreadOrder o : {ThreadOrder::Forward, ThreadOrder::Reverse}) {
    cuemu::set_thread_order(o);
    TRIDENT_LAUNCH(neighbour_kernel, 1, 64, 0, nullptr)(out.p, false);
    racy.push_back(out.get());
    TRIDENT_LAUNCH(neighbour_kernel, 1, 64, 0, nullptr)(out.p, true);
    fixed.push_back(out.get());
  }
  CHECK(racy[0] != racy[1]);  // forward: lanes read slots not yet written (NaN) or written
  for (int i = 0; i < 64; ++i) {
    CHECK(fixed[0][i] == static_cast<float>((i + 1) % 64));
    CHECK(fixed[1][i] == fixed[0][i]);
  }
}

TEST_CASE("barriers and shuffles that not all threads reach are errors", "[cuda-emu][emulator]") {
  DeviceArray<float> out(64);
  TRIDENT_LAUNCH(divergent_barrier_kernel, 1, 64, 0, nullptr)(out.p);
  std::string msg = expect_fault(nullptr);
  CHECK_THAT(msg, Catch::Contains("deadlock") && Catch::Contains("divergent_barrier_kernel"));

  TRIDENT_LAUNCH(exit_before_barrier_kernel, 1, 64, 0, nullptr)(out.p, 40);
  msg = expect_fault(nullptr);
  CHECK_THAT(msg, Catch::Contains("40 of 64 threads") && Catch::Contains("exited"));

  TRIDENT_LAUNCH(partial_shuffle_kernel, 1, 64, 0, nullptr)(out.p);
  msg = expect_fault(nullptr);
  CHECK_THAT(msg, Catch::Contains("__shfl_xor_sync") && Catch::Contains("never completes"));

  // The device works again after the sticky error is cleared.
  TRIDENT_LAUNCH(exit_before_barrier_kernel, 1, 64, 0, nullptr)(out.p, 64);
  check(cudaDeviceSynchronize());
}

TEST_CASE("shared memory starts as NaN, dynamic shared memory has the launch size",
          "[cuda-emu][emulator]") {
  DeviceArray<float> out(32);
  TRIDENT_LAUNCH(read_uninitialised_shared_kernel, 1, 32, 0, nullptr)(out.p);
  for (float v : out.get()) CHECK(std::isnan(v));
  TRIDENT_LAUNCH(dynamic_shared_kernel, 1, 128, 1000 * sizeof(float), nullptr)(out.p, 1000);
  CHECK(out.get()[0] == 999.0f * 1000.0f / 2.0f);
}

TEST_CASE("warp votes and atomics", "[cuda-emu][emulator]") {
  DeviceArray<unsigned> out(3);
  TRIDENT_LAUNCH(ballot_kernel, 1, 32, 0, nullptr)(out.p);
  const std::vector<unsigned> h = out.get();
  unsigned expect = 0;
  for (int i = 0; i < 32; i += 3) expect |= 1u << i;
  CHECK(h[0] == expect);
  CHECK(h[1] == 1u);
  CHECK(h[2] == 1u);
  DeviceArray<int> counter(1);
  check(cudaMemset(counter.p, 0, sizeof(int)));
  TRIDENT_LAUNCH(atomic_count_kernel, 7, 96, 0, nullptr)(counter.p);
  CHECK(counter.get()[0] == 7 * 96);
}

TEST_CASE("launch limits are checked at launch", "[cuda-emu][emulator]") {
  DeviceArray<float> out(4096);
  (void)cudaGetLastError();
  TRIDENT_LAUNCH(scale_kernel, 1, 2048, 0, nullptr)(out.p, 1, 1.0f);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  TRIDENT_LAUNCH(scale_kernel, dim3(1, 70000), 32, 0, nullptr)(out.p, 1, 1.0f);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  TRIDENT_LAUNCH(scale_kernel, 1, dim3(32, 1, 65), 0, nullptr)(out.p, 1, 1.0f);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  // More than 48 KB of dynamic shared memory needs the opt-in attribute first.
  const size_t big = 64 * 1024;
  TRIDENT_LAUNCH(dynamic_shared_kernel, 1, 128, big, nullptr)(out.p, 1000);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  check(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(big)));
  TRIDENT_LAUNCH(dynamic_shared_kernel, 1, 128, big, nullptr)(out.p, static_cast<int>(big / 4));
  check(cudaGetLastError());
  check(cudaDeviceSynchronize());
}

TEST_CASE("streams run asynchronously and only events order them",
          "[cuda-emu][emulator][streams]") {
  cudaStream_t a, b;
  check(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
  check(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
  float* pinned = nullptr;
  check(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(float)));
  DeviceArray<float> x(1);
  check(cudaMemset(x.p, 0, sizeof(float)));

  // Without an event: stream b copies x before stream a's (slow) producer wrote it.
  *pinned = 1.0f;
  check(cudaLaunchHostFunc(a, host_sleep_then_write, pinned));
  check(cudaMemcpyAsync(x.p, pinned, sizeof(float), cudaMemcpyHostToDevice, a));
  float seen = -1.0f;
  check(cudaMemcpyAsync(&seen, x.p, sizeof(float), cudaMemcpyDeviceToHost, b));
  CHECK(seen == 0.0f);
  check(cudaStreamSynchronize(a));

  // With the event: the read waits for the write.
  check(cudaMemset(x.p, 0, sizeof(float)));
  *pinned = 1.0f;
  cudaEvent_t done;
  check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  check(cudaLaunchHostFunc(a, host_sleep_then_write, pinned));
  check(cudaMemcpyAsync(x.p, pinned, sizeof(float), cudaMemcpyHostToDevice, a));
  check(cudaEventRecord(done, a));
  CHECK(cudaEventQuery(done) == cudaErrorNotReady);
  check(cudaStreamWaitEvent(b, done, 0));
  check(cudaMemcpyAsync(&seen, x.p, sizeof(float), cudaMemcpyDeviceToHost, b));
  CHECK(seen == 42.0f);
  CHECK(cudaEventQuery(done) == cudaSuccess);

  // The legacy default stream does not wait for non-blocking streams...
  check(cudaMemset(x.p, 0, sizeof(float)));
  check(cudaLaunchHostFunc(a, host_sleep_then_write, pinned));
  check(cudaMemcpyAsync(x.p, pinned, sizeof(float), cudaMemcpyHostToDevice, a));
  check(cudaMemcpy(&seen, x.p, sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(seen == 0.0f);
  check(cudaStreamSynchronize(a));
  // ...but does wait for blocking ones.
  cudaStream_t blocking;
  check(cudaStreamCreate(&blocking));
  check(cudaMemset(x.p, 0, sizeof(float)));
  check(cudaLaunchHostFunc(blocking, host_sleep_then_write, pinned));
  check(cudaMemcpyAsync(x.p, pinned, sizeof(float), cudaMemcpyHostToDevice, blocking));
  check(cudaMemcpy(&seen, x.p, sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(seen == 42.0f);

  check(cudaEventDestroy(done));
  check(cudaStreamDestroy(a));
  check(cudaStreamDestroy(b));
  check(cudaStreamDestroy(blocking));
  check(cudaFreeHost(pinned));
}

TEST_CASE("copies check pointer kinds and allocation bounds", "[cuda-emu][emulator]") {
  DeviceArray<float> x(16);
  std::vector<float> h(32, 1.0f);
  CHECK(cudaMemcpy(x.p, h.data(), 16 * sizeof(float), cudaMemcpyDeviceToHost) ==
        cudaErrorInvalidValue);
  CHECK(cudaMemcpy(x.p, h.data(), 32 * sizeof(float), cudaMemcpyHostToDevice) ==
        cudaErrorInvalidValue);
  CHECK(cudaMemset(x.p + 8, 0, 16 * sizeof(float)) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(x.p, h.data(), 16 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  cudaPointerAttributes attr{};
  check(cudaPointerGetAttributes(&attr, x.p + 3));
  CHECK(attr.type == cudaMemoryTypeDevice);
  check(cudaPointerGetAttributes(&attr, h.data()));
  CHECK(attr.type == cudaMemoryTypeUnregistered);
  (void)cudaGetLastError();
}

TEST_CASE("the emulated device reports a named Hopper GPU", "[cuda-emu][emulator]") {
  int count = 0;
  check(cudaGetDeviceCount(&count));
  CHECK(count >= 1);
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0));
  CHECK_THAT(std::string(p.name),
             Catch::Contains("H100") || Catch::Contains("H200") || Catch::Contains("A100"));
  CHECK(p.maxThreadsPerBlock == 1024);
  CHECK(p.sharedMemPerBlock == 48 * 1024);
}

TEST_CASE("the launch log counts each stream op by name once it has run, graph nodes per replay",
          "[cuda-emu][emulator][launch-log]") {
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  DeviceArray<int> out(24);
  check(cudaDeviceSynchronize());
  cuemu::reset_launch_counts();
  for (int i = 0; i < 3; ++i) TRIDENT_LAUNCH(coords_kernel, 1, 24, 0, s)(out.p);
  check(cudaMemsetAsync(out.p, 0, 24 * sizeof(int), s));
  cudaEvent_t ev;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  check(cudaEventRecord(ev, s));
  check(cudaStreamWaitEvent(s, ev, 0));
  // Captured: nothing runs at capture; each of the 2 replays runs the kernel and the memset.
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  TRIDENT_LAUNCH(coords_kernel, 1, 24, 0, s)(out.p);
  check(cudaMemsetAsync(out.p, 0, sizeof(int), s));
  check(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0));
  check(cudaGraphLaunch(exec, s));
  check(cudaGraphLaunch(exec, s));
  check(cudaStreamSynchronize(s));
  const std::map<std::string, long long> c = cuemu::launch_counts();
  CHECK(c.size() == 2);  // event records and waits are not work
  CHECK(c.at("coords_kernel") == 5);
  CHECK(c.at("cudaMemsetAsync") == 3);
  cuemu::reset_launch_counts();
  CHECK(cuemu::launch_counts().empty());
  check(cudaGraphExecDestroy(exec));
  check(cudaGraphDestroy(graph));
  check(cudaEventDestroy(ev));
  check(cudaStreamDestroy(s));
}
