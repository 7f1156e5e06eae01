// The CUDA runtime as core sees it, callable from any build: without CUDA (a CPU-only build)
// the device count is 0 and the rest throws trident::Error saying so.
#pragma once
#include <string>

namespace trident {

// Visible CUDA devices; 0 when there is no driver, no device or no CUDA in this build.
int cuda_device_count_or_zero();
// Why no CUDA device can be used ("" when at least one can): for skip messages and logs.
std::string cuda_unavailable_reason();
// Throws trident::Error with one line naming the cause when cuda:index cannot be used: no
// driver (CUDA error 35), no device (100), an index out of range, a GPU older than sm_80, or a
// build without CUDA.
void cuda_check_device(int index);
// What MFU and logs need to know about a GPU.
struct CudaDeviceInfo {
  std::string name;          // "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0;  // compute capability
  int sm_count = 0;
  size_t total_memory = 0;     // bytes
  double peak_bf16_flops = 0;  // dense tensor-core peak (datasheet table, else an estimate)
  double peak_fp32_flops = 0;  // CUDA-core fp32 peak (no TF32)
};
// Throws as cuda_check_device does when the device cannot be used.
CudaDeviceInfo cuda_device_info(int index);

// The stream (a cudaStream_t) on which the CUDA backend queues all work of device `index`;
// other streams (NCCL) must order themselves against it.
void* cuda_compute_stream(int index);

// Host synchronisations with a GPU (cudaStreamSynchronize, a copy to the host, cudaFree, ...)
// and cudaMalloc calls made so far by the process, as the test-only CUDA emulation counts them
// (kernels/cuda/emu/include/trident_cuda_emu.hpp); -1 in other builds, where nothing counts.
long long cuda_emulated_host_syncs();
long long cuda_emulated_mallocs();

}  // namespace trident
