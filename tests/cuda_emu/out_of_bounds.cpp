// A kernel that writes one element past the end of its cudaMalloc buffer. Run by ctest, which
// expects the process to die with AddressSanitizer's report (or, in builds without ASan, on the
// guard page after the allocation): device memory is bounded under the emulation.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "common.cuh"

namespace {
__global__ void write_kernel(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) x[i] = 1.0f;  // the bug: <= instead of <
}
extern "C" void on_segv(int) {
  const char msg[] = "guard page after the device allocation hit (SIGSEGV)\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(3);
}
}  // namespace

int main() {
  std::signal(SIGSEGV, on_segv);
  const int n = 1024;  // 4096 bytes: the byte past the end is past the 256-byte rounding too
  float* x = nullptr;
  if (cudaMalloc(&x, n * sizeof(float)) != cudaSuccess) return 1;
  TRIDENT_LAUNCH(write_kernel, (n + 256) / 256, 256, 0, nullptr)(x, n);
  cudaDeviceSynchronize();
  std::puts("no out-of-bounds write was detected");
  return 0;
}
