// CUDA device discovery and the one-line errors for a device that cannot be used. In a build
// without CUDA the same functions report that instead.
#include "trident/core/cuda.hpp"

#include "trident/core/error.hpp"

#ifdef TRIDENT_WITH_CUDA
#include <cuda_runtime_api.h>
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
  TRIDENT_CHECK(count > 0, "device cuda:", index, " requested but no CUDA-capable GPU is visible"
                " (check CUDA_VISIBLE_DEVICES or pass --device cpu)");
  TRIDENT_CHECK(index >= 0 && index < count, "device cuda:", index, " requested but ", count,
                " CUDA device", count == 1 ? " is" : "s are", " visible (cuda:0 .. cuda:",
                count - 1, ")");
  cudaDeviceProp prop{};
  const cudaError_t pe = cudaGetDeviceProperties(&prop, index);
  TRIDENT_CHECK(pe == cudaSuccess, "device cuda:", index, ": cannot read its properties (",
                cudaGetErrorName(pe), ")");
  TRIDENT_CHECK(prop.major >= 8, "device cuda:", index, " is a ", prop.name,
                " (compute capability ", prop.major, ".", prop.minor,
                "); Trident's CUDA kernels need sm_80 (A100) or newer");
}

#else  // a build without CUDA

int cuda_device_count_or_zero() { return 0; }

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

}  // namespace trident
