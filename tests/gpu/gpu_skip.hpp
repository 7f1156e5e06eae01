// When a GPU test binary may skip (exit 77, ctest's SKIP_RETURN_CODE) instead of running: only
// when the machine has no GPU. The CUDA runtime says so with cudaErrorNoDevice (100), or with
// cudaErrorInsufficientDriver (35) when no driver library is installed at all (a GPU-less
// machine). Any other outcome is a failure (exit 1), never a skip: a driver that is there but
// too old, or another CUDA error. With TRIDENT_REQUIRE_GPU=1 in the environment a skip becomes a
// failure too (a GPU job must not pass by skipping). Plain C++ (no CUDA headers) so the CPU-side
// tests check the rule itself.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace trident::gpu_test {

// The runtime's error codes used by the rule (cuda_runtime_api.h, stable across versions).
constexpr int kCudaSuccess = 0;
constexpr int kCudaErrorInsufficientDriver = 35;
constexpr int kCudaErrorNoDevice = 100;
constexpr int kSkipExitCode = 77;

struct GpuProbe {
  enum Kind { Run, Skip, Fail } kind = Run;
  std::string message;  // why it skips or fails
};

// `rc`: what cudaGetDeviceCount returned (`rc_text` its name and text), `count` the devices
// it reported, `driver_installed` whether the driver library (libcuda.so.1) can be loaded.
inline GpuProbe classify_gpu_probe(int rc, const std::string& rc_text, int count,
                                   bool driver_installed, bool require_gpu) {
  GpuProbe p;
  if (rc == kCudaSuccess && count > 0) return p;
  const bool no_gpu = (rc == kCudaSuccess && count == 0) || rc == kCudaErrorNoDevice ||
                      (rc == kCudaErrorInsufficientDriver && !driver_installed);
  if (!no_gpu) {
    p.kind = GpuProbe::Fail;
    p.message = "the CUDA runtime cannot list devices (CUDA error " + std::to_string(rc) + ", " +
                rc_text +
                (rc == kCudaErrorInsufficientDriver ? "; libcuda.so.1 is installed: the driver is "
                                                      "older than this CUDA runtime"
                                                    : "") +
                ")";
    return p;
  }
  p.message = "no CUDA device on this machine (" +
              (rc == kCudaSuccess ? std::string("0 devices")
                                  : "CUDA error " + std::to_string(rc) + ", " + rc_text) +
              ")";
  if (require_gpu) {
    p.kind = GpuProbe::Fail;
    p.message += " and TRIDENT_REQUIRE_GPU=1 forbids skipping";
  } else {
    p.kind = GpuProbe::Skip;
  }
  return p;
}

inline bool require_gpu_from_env() {
  const char* v = std::getenv("TRIDENT_REQUIRE_GPU");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

// Prints the verdict; returns the exit code for a skip or a failure, or -1 to run the tests.
inline int report_gpu_probe(const GpuProbe& p) {
  switch (p.kind) {
    case GpuProbe::Run:
      return -1;
    case GpuProbe::Skip:
      std::printf("SKIPPED: %s\n", p.message.c_str());
      return kSkipExitCode;
    case GpuProbe::Fail:
      break;
  }
  std::fprintf(stderr, "FAILED: %s\n", p.message.c_str());
  return 1;
}

}  // namespace trident::gpu_test
