// Dense matrix multiply through cuBLASLt with row-major operands, as kernels/cpu/gemm.hpp:
// C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, lda/ldb/ldc row strides of the matrices as
// stored (A is stored K x M when transA), `batch` products at strides strideA/B/C.
// f32 runs in true fp32 (CUBLAS_COMPUTE_32F, no TF32); bf16 operands accumulate in fp32.
#pragma once
#include <cublasLt.h>

#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// Optional fused epilogues: C = act(op(A) op(B) + bias) with bias (N) in the storage type.
enum class GemmEpilogue : uint8_t { None, Bias, GeluBias };

struct GemmArgs {
  bool transA = false, transB = false;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  int64_t lda = 0, strideA = 0;
  const void* B = nullptr;
  int64_t ldb = 0, strideB = 0;
  void* C = nullptr;
  int64_t ldc = 0, strideC = 0;
  GemmEpilogue epilogue = GemmEpilogue::None;
  const void* bias = nullptr;
};

// `workspace` (device, workspace_bytes) is owned by the caller and used on `stream` only.
void gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& args, void* workspace,
          size_t workspace_bytes, cudaStream_t stream);

}  // namespace trident::kernels::cuda
