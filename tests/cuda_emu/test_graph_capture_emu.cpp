// Stream capture and CUDA graphs under the emulation, with CUDA's semantics: work queued on a
// capturing stream is recorded, not run; a graph replays it in order each time it is launched;
// a call that would make the host wait (a synchronisation, a synchronous or pageable copy,
// cudaMalloc, cudaFree) during a global-mode capture fails with
// cudaErrorStreamCaptureUnsupported and invalidates the capture; and the emulator counts the
// host synchronisations a step makes (none inside a capture or a replay).
#include <catch2/catch.hpp>
#include <vector>

#include "common.cuh"
#include "emu_test_util.hpp"
#include "trident_cuda_emu.hpp"

namespace {

using emu_test::check;
using emu_test::DeviceArray;

__global__ void add_one(float* a, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) a[i] += 1.0f;
}
__global__ void accumulate(float* c, const float* a, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] += a[i];
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
};

cudaStreamCaptureStatus status_of(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(s, &st));
  return st;
}

// Begins a global capture on `s`, lets `forbidden` fail, and checks the capture is gone.
void expect_capture_refuses(cudaStream_t s, cudaError_t (*forbidden)(cudaStream_t)) {
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CHECK(forbidden(s) == cudaErrorStreamCaptureUnsupported);
  CHECK(status_of(s) == cudaStreamCaptureStatusInvalidated);
  // Work after the failure is refused too, and the capture ends in an error with no graph.
  cudaEvent_t ev = nullptr;
  check(cudaEventCreate(&ev));
  CHECK(cudaEventRecord(ev, s) == cudaErrorStreamCaptureInvalidated);
  cudaGraph_t g = reinterpret_cast<cudaGraph_t>(&ev);  // overwritten with null
  CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
  CHECK(g == nullptr);
  CHECK(status_of(s) == cudaStreamCaptureStatusNone);
  (void)cudaGetLastError();
  check(cudaEventDestroy(ev));
}

}  // namespace

TEST_CASE("a captured stream records its work and a graph replays it on every launch",
          "[cuda-emu][graph]") {
  constexpr int n = 300;
  Stream st;
  DeviceArray<float> a(std::vector<float>(n, 5.0f)), b(n), c(std::vector<float>(n, 0.0f));
  check(cudaMemset(b.p, 0, n * sizeof(float)));
  const long long syncs0 = cuemu::host_syncs(), launches0 = cuemu::launches_executed();

  CHECK(status_of(st.s) == cudaStreamCaptureStatusNone);
  check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal));
  CHECK(status_of(st.s) == cudaStreamCaptureStatusActive);
  check(cudaMemsetAsync(a.p, 0, n * sizeof(float), st.s));  // a = 0
  TRIDENT_LAUNCH(add_one, 3, 128, 0, st.s)(a.p, n);         // a = 1
  TRIDENT_LAUNCH(add_one, 3, 128, 0, st.s)(a.p, n);         // a = 2
  check(cudaGetLastError());
  check(cudaMemcpyAsync(b.p, a.p, n * sizeof(float), cudaMemcpyDeviceToDevice, st.s));  // b = 2
  TRIDENT_LAUNCH(accumulate, 3, 128, 0, st.s)(c.p, a.p, n);                             // c += 2
  cudaEvent_t done = nullptr;
  check(cudaEventCreate(&done));
  check(cudaEventRecord(done, st.s));
  check(cudaStreamWaitEvent(st.s, done, 0));  // an event of the same capture: allowed
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(st.s, &graph));
  REQUIRE(graph != nullptr);
  CHECK(status_of(st.s) == cudaStreamCaptureStatusNone);
  // Capturing queued nothing: no kernel ran, no host wait, the data is as before.
  CHECK(cuemu::launches_executed() == launches0);
  CHECK(cuemu::host_syncs() == syncs0);
  CHECK(a.get() == std::vector<float>(n, 5.0f));
  CHECK(b.get() == std::vector<float>(n, 0.0f));

  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiate(&exec, graph, 0));
  check(cudaGraphDestroy(graph));  // the executable graph keeps its own copy
  const long long syncs1 = cuemu::host_syncs();
  for (int replay = 0; replay < 3; ++replay) check(cudaGraphLaunch(exec, st.s));
  CHECK(cuemu::host_syncs() == syncs1);  // launching a graph does not wait
  check(cudaStreamSynchronize(st.s));
  CHECK(cuemu::host_syncs() == syncs1 + 1);
  CHECK(cuemu::launches_executed() == launches0 + 3 * 3);
  CHECK(a.get() == std::vector<float>(n, 2.0f));
  CHECK(b.get() == std::vector<float>(n, 2.0f));
  CHECK(c.get() == std::vector<float>(n, 6.0f));  // three replays of c += 2
  check(cudaGraphExecDestroy(exec));
  check(cudaEventDestroy(done));
}

TEST_CASE("a call that waits for the device during a global capture fails and invalidates it",
          "[cuda-emu][graph]") {
  Stream st, other;
  DeviceArray<float> a(16);
  static float* dev = nullptr;
  dev = a.p;
  static std::vector<float> host(16);
  SECTION("cudaStreamSynchronize of the capturing stream") {
    expect_capture_refuses(st.s, [](cudaStream_t s) { return cudaStreamSynchronize(s); });
  }
  SECTION("cudaStreamSynchronize of another stream") {
    static cudaStream_t o = nullptr;
    o = other.s;
    expect_capture_refuses(st.s, [](cudaStream_t) { return cudaStreamSynchronize(o); });
  }
  SECTION("cudaDeviceSynchronize") {
    expect_capture_refuses(st.s, [](cudaStream_t) { return cudaDeviceSynchronize(); });
  }
  SECTION("a synchronous copy to the host") {
    expect_capture_refuses(st.s, [](cudaStream_t) {
      return cudaMemcpy(host.data(), dev, 16 * sizeof(float), cudaMemcpyDeviceToHost);
    });
  }
  SECTION("an asynchronous copy into pageable host memory on the capturing stream") {
    expect_capture_refuses(st.s, [](cudaStream_t s) {
      return cudaMemcpyAsync(host.data(), dev, 16 * sizeof(float), cudaMemcpyDeviceToHost, s);
    });
  }
  SECTION("cudaMalloc") {
    expect_capture_refuses(st.s, [](cudaStream_t) {
      void* p = nullptr;
      return cudaMalloc(&p, 256);
    });
  }
  SECTION("cudaFree") {
    static void* p = nullptr;
    check(cudaMalloc(&p, 256));
    expect_capture_refuses(st.s, [](cudaStream_t) { return cudaFree(p); });
    check(cudaFree(p));  // after the capture it works
  }
  SECTION("cudaEventSynchronize") {
    static cudaEvent_t ev = nullptr;
    check(cudaEventCreate(&ev));
    check(cudaEventRecord(ev, other.s));
    expect_capture_refuses(st.s, [](cudaStream_t) { return cudaEventSynchronize(ev); });
    check(cudaEventDestroy(ev));
  }
  // The stream captures again after an invalidated capture, and its work runs normally.
  check(cudaMemsetAsync(a.p, 0, 16 * sizeof(float), st.s));
  TRIDENT_LAUNCH(add_one, 1, 32, 0, st.s)(a.p, 16);
  check(cudaStreamSynchronize(st.s));
  CHECK(a.get() == std::vector<float>(16, 1.0f));
}

TEST_CASE("capture rules: relaxed mode, the legacy stream, events from outside, nesting",
          "[cuda-emu][graph]") {
  Stream st;
  cudaGraph_t g = nullptr;
  SECTION("relaxed mode allows cudaMalloc and cudaFree during the capture") {
    check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeRelaxed));
    void* p = nullptr;
    check(cudaMalloc(&p, 256));
    check(cudaFree(p));
    check(cudaStreamEndCapture(st.s, &g));
    CHECK(g != nullptr);
    check(cudaGraphDestroy(g));
  }
  SECTION("the legacy default stream cannot capture") {
    CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
          cudaErrorStreamCaptureUnsupported);
    (void)cudaGetLastError();
  }
  SECTION("a second begin, and an end without a begin, are illegal") {
    check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal));
    CHECK(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaErrorIllegalState);
    check(cudaStreamEndCapture(st.s, &g));
    check(cudaGraphDestroy(g));
    CHECK(cudaStreamEndCapture(st.s, &g) == cudaErrorIllegalState);
    (void)cudaGetLastError();
  }
  SECTION("waiting for an event recorded outside the capture breaks its isolation") {
    Stream other;
    cudaEvent_t ev = nullptr;
    check(cudaEventCreate(&ev));
    check(cudaEventRecord(ev, other.s));
    check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal));
    CHECK(cudaStreamWaitEvent(st.s, ev, 0) == cudaErrorStreamCaptureIsolation);
    CHECK(cudaStreamEndCapture(st.s, &g) == cudaErrorStreamCaptureInvalidated);
    (void)cudaGetLastError();
    check(cudaEventDestroy(ev));
  }
  SECTION("a graph launched on a capturing stream is recorded into the new graph") {
    DeviceArray<float> a(std::vector<float>(8, 0.0f));
    check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal));
    TRIDENT_LAUNCH(add_one, 1, 32, 0, st.s)(a.p, 8);
    check(cudaStreamEndCapture(st.s, &g));
    cudaGraphExec_t inner = nullptr, outer = nullptr;
    check(cudaGraphInstantiate(&inner, g, 0));
    check(cudaGraphDestroy(g));
    check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal));
    check(cudaGraphLaunch(inner, st.s));
    check(cudaGraphLaunch(inner, st.s));
    check(cudaStreamEndCapture(st.s, &g));
    check(cudaGraphInstantiate(&outer, g, 0));
    check(cudaGraphDestroy(g));
    CHECK(a.get() == std::vector<float>(8, 0.0f));
    check(cudaGraphLaunch(outer, st.s));
    check(cudaStreamSynchronize(st.s));
    CHECK(a.get() == std::vector<float>(8, 2.0f));
    check(cudaGraphExecDestroy(inner));
    check(cudaGraphExecDestroy(outer));
  }
}
