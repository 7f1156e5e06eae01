// Dense matrix multiply through cuBLASLt with row-major operands, as kernels/cpu/gemm.hpp:
// C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, lda/ldb/ldc row strides of the matrices as
// stored (A is stored K x M when transA), `batch` products at strides strideA/B/C.
// f32 runs in true fp32 (CUBLAS_COMPUTE_32F, no TF32); bf16 operands accumulate in fp32.
#pragma once
#include <cublasLt.h>

#include <memory>

#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// Optional fused epilogues, `bias` in the storage type. Bias, GeluBias: C = act(op(A) op(B) +
// bias) with bias (N) an input. BiasGradA: C = op(A) op(B) and bias (M) = the sums over k of
// op(A) (with op(A) = dY^T, a Linear layer's weight and bias gradients in one call).
// GeluAuxBias: C = gelu(op(A) op(B) + bias) and aux (M x N, row stride ldaux, a multiple of 8)
// = the GELU input, which the backward pass needs. DGelu: C = (op(A) op(B)) * gelu'(aux), aux
// (M x N, row stride ldaux, a multiple of 8) the GELU input GeluAuxBias saved; no bias.
enum class GemmEpilogue : uint8_t { None, Bias, GeluBias, BiasGradA, GeluAuxBias, DGelu };

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
  const void* bias = nullptr;  // written, not read, by BiasGradA
  void* aux = nullptr;         // GeluAuxBias (written), DGelu (read)
  int64_t ldaux = 0;
  // Mixed precision: bf16 A and B with C (and the bias) in f32, accumulated in f32 (a weight
  // gradient written, or with beta = 1 added, straight into an f32 master gradient).
  bool c_f32 = false;
};

// `workspace` (device, workspace_bytes) is owned by the caller and used on `stream` only.
// Builds the descriptors and runs cuBLASLt's heuristic on every call (see GemmPlanCache).
void gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& args, void* workspace,
          size_t workspace_bytes, cudaStream_t stream);

// gemm() with the cuBLASLt descriptors and algorithm of each call shape built once and reused:
// the key is everything the choice depends on (handle, type, transposes, sizes, leading
// dimensions, batch strides, epilogue, the operands' address alignments and the workspace
// size), so equal shapes always run the same algorithm (deterministic results) and a training
// step runs the heuristic only on its first pass. Pointers, alpha, beta and the bias are per
// call. Thread-safe. Holds at most `capacity` plans (it starts again when full).
// gemm() returns false, having queued nothing, when cuBLASLt has no algorithm with the asked
// epilogue for the shape (remembered too): the caller then runs it without the epilogue and
// applies the bias its own way.
class GemmPlanCache {
 public:
  struct Stats {
    size_t plans;
    uint64_t hits, misses;
  };
  explicit GemmPlanCache(size_t capacity = 1024);
  ~GemmPlanCache();
  GemmPlanCache(const GemmPlanCache&) = delete;
  GemmPlanCache& operator=(const GemmPlanCache&) = delete;
  bool gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& args, void* workspace,
            size_t workspace_bytes, cudaStream_t stream);
  Stats stats() const;
  void clear();  // before the handle it was used with is destroyed

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace trident::kernels::cuda
