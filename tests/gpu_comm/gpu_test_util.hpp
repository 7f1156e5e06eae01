// Device buffers and stream helpers for the GPU communication tests.
#pragma once
#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpi_test_util.hpp"
#include "trident/core/cuda.hpp"

namespace gpu_test {

inline void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(rc));
}

inline cudaStream_t compute_stream() {
  return static_cast<cudaStream_t>(trident::cuda_compute_stream(0));
}

// cudaMalloc'd bytes, filled with 0xFF (poison) until written. Every fill and copy runs on the
// CUDA backend's compute stream, as the work it is checked against does (the legacy default
// stream does not order itself with that non-blocking stream), and returns once it is done.
class DeviceArray {
 public:
  explicit DeviceArray(size_t bytes) : bytes_(bytes) {
    check(cudaMalloc(&ptr_, bytes_ == 0 ? 1 : bytes_), "cudaMalloc");
    check(cudaMemsetAsync(ptr_, 0xFF, bytes_ == 0 ? 1 : bytes_, compute_stream()),
          "cudaMemsetAsync");
    check(cudaStreamSynchronize(compute_stream()), "cudaStreamSynchronize");
  }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void* get() const { return ptr_; }
  void upload(const test_util::Buffer& b) {
    upload_bytes(0, b.bytes.data(), b.count * trident::dtype_size(b.dtype));
  }
  // `bytes` from host memory to offset `offset`, after the compute stream's queued work.
  void upload_bytes(size_t offset, const void* src, size_t bytes) {
    check(cudaMemcpyAsync(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice,
                          compute_stream()),
          "cudaMemcpyAsync to the device");
    check(cudaStreamSynchronize(compute_stream()), "cudaStreamSynchronize");
  }
  void fill_zero() {
    check(cudaMemsetAsync(ptr_, 0, bytes_, compute_stream()), "cudaMemsetAsync");
    check(cudaStreamSynchronize(compute_stream()), "cudaStreamSynchronize");
  }
  // Copies back after the compute stream's queued work (what wait() ordered).
  void download(test_util::Buffer& b) const {
    check(cudaMemcpyAsync(b.bytes.data(), ptr_, b.count * trident::dtype_size(b.dtype),
                          cudaMemcpyDeviceToHost, compute_stream()),
          "cudaMemcpyAsync to the host");
    check(cudaStreamSynchronize(compute_stream()), "cudaStreamSynchronize");
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// Pinned host memory, for copies queued on a stream.
class PinnedArray {
 public:
  explicit PinnedArray(size_t bytes) { check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost"); }
  ~PinnedArray() { cudaFreeHost(ptr_); }
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

// Holds a stream (a host function that blocks it) until release(): work queued after it waits.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) : stream_(stream) {
    check(cudaLaunchHostFunc(stream, &StreamGate::hold, this), "cudaLaunchHostFunc");
  }
  // Releases the stream and waits until the host function returned (it reads this object).
  ~StreamGate() {
    release();
    cudaStreamSynchronize(stream_);
  }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  void release() { open_ = true; }

 private:
  static void hold(void* self) {
    while (!static_cast<StreamGate*>(self)->open_)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  cudaStream_t stream_;
  std::atomic<bool> open_{false};
};

// Queues a 50 ms pause on `stream` (a host function), so that work queued after it runs late.
inline void delay_stream(cudaStream_t stream) {
  check(cudaLaunchHostFunc(
            stream, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(50)); },
            nullptr),
        "cudaLaunchHostFunc");
}

}  // namespace gpu_test
