// Trident's CUDA emulation, internal to the cuBLASLt shim: the matmul a cublasLtMatmul call
// describes, by value (descriptors read, checked and copied at the call), and its execution on
// the CPU. cublaslt.cpp builds a Problem and queues run_matmul on the stream.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cuemu::lt {

struct Matrix {
  int32_t type = 0;  // cudaDataType
  int64_t rows = 0, cols = 0, ld = 0;
  int64_t row_stride = 1, col_stride = 0;  // element (r, c) at r * row_stride + c * col_stride
  int32_t batch = 1;
  int64_t batch_stride = 0;

  // Elements from the first to one past the last element of the last batch (0 when empty).
  int64_t extent() const {
    if (rows == 0 || cols == 0) return 0;
    return int64_t(batch - 1) * batch_stride + (rows - 1) * row_stride + (cols - 1) * col_stride +
           1;
  }
};

enum class Activation { kNone, kRelu, kGelu, kDgelu };
// Which bias gradient the epilogue writes: row sums of D, of op(A), or column sums of op(B).
enum class BiasGrad { kNone, kOfD, kOfA, kOfB };

struct Problem {
  Matrix a, b, c, d;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  uint32_t epilogue_id = 1;  // cublasLtEpilogue_t
  Activation activation = Activation::kNone;
  bool bias_in = false;  // add bias[i] before the activation
  bool aux_out = false;  // store the GELU input
  bool aux_in = false;   // read the GELU input (DGELU)
  BiasGrad bias_grad = BiasGrad::kNone;
  const void* bias = nullptr;
  int64_t bias_length = 0, bias_batch_stride = 0;
  int32_t bias_type = 0;
  const void* aux = nullptr;
  int64_t aux_ld = 0, aux_batch_stride = 0;
  int32_t aux_type = 0;
  // Set by cublasLtMatmul.
  float alpha = 1.0f, beta = 0.0f;
  const void* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  void* D = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;  // the part of the workspace the algorithm uses
};

// Computes D (and the aux output and bias gradient) of one checked problem: f32 A/B/C/D, bf16
// A/B/C/D or bf16 A/B with f32 C/D. Runs on the stream's worker thread.
void run_matmul(const Problem& p);

}  // namespace cuemu::lt
