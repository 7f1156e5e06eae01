// Helpers of the emulator's own tests: CUDA error checks, provoked faults and device arrays.
#pragma once
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common.cuh"
#include "trident_cuda_emu.hpp"

namespace emu_test {

inline void check(cudaError_t e) {
  REQUIRE(e == cudaSuccess);
}

// The message of a fault provoked on purpose, `e` the wait that reported it; clears the
// device's sticky error.
inline std::string take_fault(cudaError_t e) {
  CHECK(e == cudaErrorLaunchFailure);
  std::string msg = cuemu::last_fault_message();
  cuemu::clear_fault(0);
  (void)cudaGetLastError();
  return msg;
}
inline std::string expect_fault(cudaStream_t s) {
  return take_fault(cudaStreamSynchronize(s));
}
inline std::string expect_fault() {
  return take_fault(cudaDeviceSynchronize());
}

template <typename T>
struct DeviceArray {
  T* p = nullptr;
  size_t n;
  explicit DeviceArray(size_t count) : n(count) { check(cudaMalloc(&p, n * sizeof(T))); }
  explicit DeviceArray(const std::vector<T>& h) : DeviceArray(h.size()) {
    check(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  std::vector<T> get() const {
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

}  // namespace emu_test
