// CUDA device discovery and the one-line errors for a device that cannot be used. In a build
// without CUDA the same functions report that instead.
#include "trident/core/cuda.hpp"
#include "trident/core/error.hpp"

#ifdef TRIDENT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif
#ifdef TRIDENT_CUDA_EMULATION
#include <trident_cuda_emu.hpp>
#endif

namespace trident {

#ifdef TRIDENT_WITH_CUDA

namespace {

// The device count, or the runtime's error for why there is none.
cudaError_t query_count(int* count) {
  *count = 0;
  const cudaError_t e = cudaGetDeviceCount(count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for the next unrelated call
    *count = 0;
  }
  return e;
}

std::string count_error_text(cudaError_t e) {
  const std::string code = str_cat("CUDA error ", static_cast<int>(e), ", ", cudaGetErrorName(e));
  switch (e) {
    case cudaErrorInsufficientDriver:
      return str_cat("no usable NVIDIA driver was found (", code,
                     "); run on a GPU node or pass --device cpu");
    case cudaErrorNoDevice:
      return str_cat("no CUDA-capable GPU is visible (", code,
                     "); check CUDA_VISIBLE_DEVICES or pass --device cpu");
    default:
      return str_cat("the CUDA runtime cannot list devices (", code, ": ", cudaGetErrorString(e),
                     ")");
  }
}

}  // namespace

int cuda_device_count_or_zero() {
  int count = 0;
  query_count(&count);
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = query_count(&count);
  if (e != cudaSuccess) return count_error_text(e);
  if (count == 0) return "no CUDA-capable GPU is visible";
  return "";
}

void cuda_check_device(int index) {
  int count = 0;
  const cudaError_t e = query_count(&count);
  TRIDENT_CHECK(e == cudaSuccess, "device cuda:", index, " requested but ", count_error_text(e));
  TRIDENT_CHECK(count > 0, "device cuda:", index,
                " requested but no CUDA-capable GPU is visible"
                " (check CUDA_VISIBLE_DEVICES or pass --device cpu)");
  TRIDENT_CHECK(index >= 0 && index < count, "device cuda:", index, " requested but ", count,
                " CUDA device", count == 1 ? " is" : "s are",
                " visible (cuda:0 .. cuda:", count - 1, ")");
  cudaDeviceProp prop{};
  const cudaError_t pe = cudaGetDeviceProperties(&prop, index);
  TRIDENT_CHECK(pe == cudaSuccess, "device cuda:", index, ": cannot read its properties (",
                cudaGetErrorName(pe), ")");
  TRIDENT_CHECK(prop.major >= 8, "device cuda:", index, " is a ", prop.name,
                " (compute capability ", prop.major, ".", prop.minor,
                "); Trident's CUDA kernels need sm_80 (A100) or newer");
}

CudaDeviceInfo cuda_device_info(int index) {
  cuda_check_device(index);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, index);
  CudaDeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_memory = prop.totalGlobalMem;
  // Datasheet dense peaks (bf16 tensor cores, fp32 CUDA cores) of the GPUs clusters run; others
  // are estimated from SMs x a nominal boost clock x FLOPs per SM per clock (2048 bf16 / 256
  // fp32 on sm_80 and sm_86+, 4096 / 256 on sm_90).
  struct Known {
    const char* name_part;
    double bf16, fp32;
  };
  static const Known known[] = {{"H200", 989.4e12, 66.9e12},      {"GH200", 989.4e12, 66.9e12},
                                {"H100 PCIe", 756.5e12, 51.2e12}, {"H100 NVL", 835.5e12, 60.0e12},
                                {"H100", 989.4e12, 66.9e12},      {"A100", 312.0e12, 19.5e12},
                                {"A800", 312.0e12, 19.5e12},      {"L40S", 362.1e12, 91.6e12},
                                {"A10", 125.0e12, 31.2e12}};
  for (const Known& k : known) {
    if (info.name.find(k.name_part) != std::string::npos) {
      info.peak_bf16_flops = k.bf16;
      info.peak_fp32_flops = k.fp32;
      return info;
    }
  }
  const double clock_hz = prop.major >= 9 ? 1.75e9 : 1.4e9;
  info.peak_bf16_flops = info.sm_count * clock_hz * (prop.major >= 9 ? 4096.0 : 2048.0);
  info.peak_fp32_flops = info.sm_count * clock_hz * 256.0;
  return info;
}

#else  // a build without CUDA

CudaDeviceInfo cuda_device_info(int index) {
  cuda_check_device(index);
  return {};
}

int cuda_device_count_or_zero() {
  return 0;
}

std::string cuda_unavailable_reason() {
  return "this build of Trident has no CUDA backend (rebuild with -DTRIDENT_ENABLE_CUDA=ON)";
}

void cuda_check_device(int index) {
  throw Error(str_cat("device cuda:", index, " requested but ", cuda_unavailable_reason()));
}

void* cuda_compute_stream(int index) {
  cuda_check_device(index);
  return nullptr;
}

#endif

// The CUDA emulation counts what a real GPU cannot report; elsewhere nothing counts (-1).
#ifdef TRIDENT_CUDA_EMULATION
long long cuda_emulated_host_syncs() {
  return cuemu::host_syncs();
}
long long cuda_emulated_mallocs() {
  return cuemu::device_mallocs();
}
#else
long long cuda_emulated_host_syncs() {
  return -1;
}
long long cuda_emulated_mallocs() {
  return -1;
}
#endif

}  // namespace trident
