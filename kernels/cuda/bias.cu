// Bias add (forward) and bias gradient (backward) on (rows, cols) row-major buffers.
// Forward: one thread per element, column = i % cols. Backward: the deterministic two-pass
// column sum of reduce.cu.
#include "common.cuh"
#include "trident/kernels/cuda/bias.hpp"
#include "trident/kernels/cuda/reduce.hpp"

namespace trident::kernels::cuda {
namespace {

template <typename T>
__global__ void add_bias_kernel(T* out, const T* in, const T* bias, int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = detail::from_float<T>(detail::to_float(in[i]) + detail::to_float(bias[i % cols]));
  }
}

}  // namespace

void add_bias(ScalarType t, void* out, const void* in, const void* bias, int64_t rows, int64_t cols,
              cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "add_bias", {
    TRIDENT_LAUNCH(add_bias_kernel<T>, detail::grid_for(n, 256), 256, 0, stream)
    (static_cast<T*>(out), static_cast<const T*>(in), static_cast<const T*>(bias), n, cols);
    detail::check_launch("add_bias_kernel");
  });
}

void bias_backward(ScalarType t, void* dbias, const void* dout, int64_t rows, int64_t cols,
                   Scratch& scratch, cudaStream_t stream) {
  sum_rows(t, dbias, dout, rows, cols, scratch, stream);
}

}  // namespace trident::kernels::cuda
