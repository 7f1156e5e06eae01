// Row-major GEMM through cuBLASLt. cuBLASLt is column-major, and a row-major matrix read as
// column-major is its transpose, so C = op(A) op(B) (row-major, M x N) is computed as the
// column-major product C^T (N x M) = op(B)^T op(A)^T: cuBLASLt's first operand is our B (with
// our transB), its second our A (with our transA), m = N, n = M, k = K, and every leading
// dimension stays as given. A bias epilogue then adds a vector over cuBLASLt's rows, i.e. over
// our columns, which is the Linear layer's bias. Batches use strided layouts.
// The algorithm comes from cuBLASLt's heuristic under the caller's workspace limit and the
// actual pointer alignments (the default preference assumes 256-byte aligned operands, which
// views into larger buffers need not be). K = 0 or alpha = 0 reduces to C = beta C, done here.
#include <algorithm>
#include <string>

#include "common.cuh"
#include "trident/kernels/cuda/matmul.hpp"

namespace trident::kernels::cuda {
namespace {

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cuBLASLt ") + what + ": " + cublasLtGetStatusName(s) +
                             " (" + cublasLtGetStatusString(s) + ")");
  }
}

// RAII owners of the cuBLASLt descriptors of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc() { check_lt(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc"); }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(d); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
  template <typename V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& value) {
    check_lt(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(value)), "matmul attribute");
  }
};

struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
         int64_t stride) {
    check_lt(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows),
                                        static_cast<uint64_t>(cols), ld),
             "matrix layout");
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                sizeof(count)),
               "batch count");
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof(stride)),
               "batch stride");
    }
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(l); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  Preference() { check_lt(cublasLtMatmulPreferenceCreate(&p), "preference"); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(p); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  template <typename V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, const V& value) {
    check_lt(cublasLtMatmulPreferenceSetAttribute(p, attr, &value, sizeof(value)), "preference");
  }
};

// Largest power of two (<= 256) dividing the address and the per-matrix byte stride.
uint32_t alignment_of(const void* p, int64_t stride_bytes) {
  uint64_t a = reinterpret_cast<uintptr_t>(p) | 256u;
  if (stride_bytes != 0) a |= static_cast<uint64_t>(stride_bytes);
  return static_cast<uint32_t>(a & (~a + 1));
}

template <typename T>
__global__ void scale_matrix_kernel(T* C, int64_t batch, int64_t M, int64_t N, int64_t ldc,
                                    int64_t strideC, float beta) {
  const int64_t total = batch * M * N;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = k % N, i = (k / N) % M, b = k / (M * N);
    T* c = C + b * strideC + i * ldc + j;
    *c = detail::from_float<T>(beta == 0.0f ? 0.0f : beta * detail::to_float(*c));
  }
}

void check_args(const GemmArgs& a) {
  const auto bad = [](const std::string& what) {
    throw std::invalid_argument("gemm: " + what);
  };
  if (a.M < 0 || a.N < 0 || a.K < 0 || a.batch < 0) {
    bad("negative size M=" + std::to_string(a.M) + " N=" + std::to_string(a.N) +
        " K=" + std::to_string(a.K) + " batch=" + std::to_string(a.batch));
  }
  if (a.M == 0 || a.N == 0 || a.batch == 0) return;
  if (a.ldc < a.N) bad("leading dimension ldc = " + std::to_string(a.ldc) + " < N");
  if (a.K == 0) return;
  if (a.lda < (a.transA ? a.M : a.K)) bad("leading dimension lda = " + std::to_string(a.lda));
  if (a.ldb < (a.transB ? a.K : a.N)) bad("leading dimension ldb = " + std::to_string(a.ldb));
  if (a.batch > INT32_MAX) bad("batch of " + std::to_string(a.batch) + " exceeds int32");
  if (a.epilogue != GemmEpilogue::None && a.bias == nullptr) bad("bias epilogue without a bias");
}

}  // namespace

void gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& a, void* workspace,
          size_t workspace_bytes, cudaStream_t stream) {
  check_args(a);
  if (a.M == 0 || a.N == 0 || a.batch == 0) return;
  if (t != ScalarType::F32 && t != ScalarType::BF16) detail::unsupported("matmul", t);
  if (a.K == 0 || a.alpha == 0.0f) {
    if (a.epilogue != GemmEpilogue::None) {
      throw std::invalid_argument("gemm: an epilogue needs K > 0 and alpha != 0");
    }
    TRIDENT_CUDA_FLOAT_DISPATCH(t, "matmul", {
      TRIDENT_LAUNCH(scale_matrix_kernel<T>, detail::grid_for(a.batch * a.M * a.N, 256), 256, 0, stream)(
          static_cast<T*>(a.C), a.batch, a.M, a.N, a.ldc, a.strideC, a.beta);
      detail::check_launch("scale_matrix_kernel");
    });
    return;
  }
  const cudaDataType_t type = t == ScalarType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  const int64_t es = static_cast<int64_t>(scalar_size(t));

  MatmulDesc desc;
  const cublasOperation_t op_first = a.transB ? CUBLAS_OP_T : CUBLAS_OP_N;   // our B
  const cublasOperation_t op_second = a.transA ? CUBLAS_OP_T : CUBLAS_OP_N;  // our A
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, op_first);
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, op_second);
  if (a.epilogue != GemmEpilogue::None) {
    const cublasLtEpilogue_t epi =
        a.epilogue == GemmEpilogue::Bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, epi);
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, a.bias);
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, type);
  }
  // Column-major shapes of the stored matrices.
  const Layout first(type, a.transB ? a.K : a.N, a.transB ? a.N : a.K, a.ldb, a.batch, a.strideB);
  const Layout second(type, a.transA ? a.M : a.K, a.transA ? a.K : a.M, a.lda, a.batch, a.strideA);
  const Layout out(type, a.N, a.M, a.ldc, a.batch, a.strideC);

  Preference pref;
  const uint64_t ws = workspace_bytes;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(a.B, a.strideB * es));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(a.A, a.strideA * es));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(a.C, a.strideC * es));
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(a.C, a.strideC * es));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(handle, desc.d, first.l, second.l, out.l, out.l, pref.p,
                                          1, &result, &found),
           "heuristic");
  if (found == 0) {
    throw std::runtime_error("cuBLASLt has no algorithm for a " + std::string(scalar_name(t)) +
                             " matmul M=" + std::to_string(a.M) + " N=" + std::to_string(a.N) +
                             " K=" + std::to_string(a.K) + " batch=" + std::to_string(a.batch));
  }
  check_lt(cublasLtMatmul(handle, desc.d, &a.alpha, a.B, first.l, a.A, second.l, &a.beta, a.C,
                          out.l, a.C, out.l, &result.algo, workspace, workspace_bytes, stream),
           "matmul");
}

}  // namespace trident::kernels::cuda
