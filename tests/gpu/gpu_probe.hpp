// The GPU test binaries' probe: asks the CUDA runtime for its devices and applies the skip
// rule of gpu_skip.hpp. Returns -1 to run the tests, else the exit code (77 skip, 1 failure).
#pragma once
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <string>

#include "gpu_skip.hpp"

namespace trident::gpu_test {

inline bool cuda_driver_installed() {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) return false;
  dlclose(lib);
  return true;
}

inline int probe_gpu() {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  const std::string text = rc == cudaSuccess
                               ? std::string()
                               : std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc);
  const bool driver = rc == cudaErrorInsufficientDriver ? cuda_driver_installed() : true;
  return report_gpu_probe(
      classify_gpu_probe(static_cast<int>(rc), text, count, driver, require_gpu_from_env()));
}

}  // namespace trident::gpu_test
