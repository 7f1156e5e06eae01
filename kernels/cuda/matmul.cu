// Row-major GEMM through cuBLASLt. cuBLASLt is column-major, and a row-major matrix read as
// column-major is its transpose, so C = op(A) op(B) (row-major, M x N) is computed as the
// column-major product C^T (N x M) = op(B)^T op(A)^T: cuBLASLt's first operand is our B (with
// our transB), its second our A (with our transA), m = N, n = M, k = K, and every leading
// dimension stays as given. A bias epilogue then adds a vector over cuBLASLt's rows, i.e. over
// our columns, which is the Linear layer's bias. Batches use strided layouts.
// The algorithm comes from cuBLASLt's heuristic under the caller's workspace limit and the
// actual pointer alignments (the default preference assumes 256-byte aligned operands, which
// views into larger buffers need not be). K = 0 or alpha = 0 reduces to C = beta C, done here.
// GemmPlanCache keeps the descriptors and the heuristic's choice per call shape (PlanKey), so a
// training step, which repeats a few dozen shapes, builds them once, and a shape always runs
// the same algorithm.
#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

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
  MatmulDesc() {
    check_lt(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
  }
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

bool has_bias(GemmEpilogue e) {
  return e != GemmEpilogue::None && e != GemmEpilogue::DGelu;
}
bool has_aux(GemmEpilogue e) {
  return e == GemmEpilogue::GeluAuxBias || e == GemmEpilogue::DGelu;
}

void check_args(const GemmArgs& a) {
  const auto bad = [](const std::string& what) { throw std::invalid_argument("gemm: " + what); };
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
  if (has_bias(a.epilogue) && a.bias == nullptr) bad("bias epilogue without a bias");
  if (has_aux(a.epilogue) && (a.aux == nullptr || a.ldaux < a.N)) {
    bad("GELU epilogue without an aux buffer of row stride >= N");
  }
}

// Everything the chosen algorithm depends on: two calls with equal keys may share a plan.
struct PlanKey {
  cublasLtHandle_t handle;
  ScalarType t;
  bool c_f32;
  bool transA, transB;
  GemmEpilogue epilogue;
  int64_t batch, M, N, K, lda, ldb, ldc, strideA, strideB, strideC;
  int64_t ldaux;
  uint32_t alignA, alignB, alignC, alignBias, alignAux;  // the heuristic reads bias and aux too
  size_t workspace_bytes;
  bool operator==(const PlanKey& o) const {
    return handle == o.handle && t == o.t && c_f32 == o.c_f32 && transA == o.transA &&
           transB == o.transB && epilogue == o.epilogue && batch == o.batch && M == o.M &&
           N == o.N && K == o.K && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           strideA == o.strideA && strideB == o.strideB && strideC == o.strideC &&
           alignA == o.alignA && alignB == o.alignB && alignC == o.alignC &&
           alignBias == o.alignBias && ldaux == o.ldaux && alignAux == o.alignAux &&
           workspace_bytes == o.workspace_bytes;
  }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    const auto mix = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xFF)) * 1099511628211ull;
    };
    mix(reinterpret_cast<uintptr_t>(k.handle));
    mix(static_cast<uint64_t>(k.t) | uint64_t(k.transA) << 8 | uint64_t(k.transB) << 9 |
        uint64_t(k.epilogue) << 10 | uint64_t(k.c_f32) << 18);
    for (int64_t v :
         {k.batch, k.M, k.N, k.K, k.lda, k.ldb, k.ldc, k.strideA, k.strideB, k.strideC}) {
      mix(static_cast<uint64_t>(v));
    }
    mix(uint64_t(k.alignA) | uint64_t(k.alignB) << 16 | uint64_t(k.alignC) << 32 |
        uint64_t(k.alignBias) << 48);
    mix(static_cast<uint64_t>(k.ldaux) ^ uint64_t(k.alignAux) << 56);
    mix(k.workspace_bytes);
    return static_cast<size_t>(h);
  }
};

PlanKey key_of(cublasLtHandle_t handle, ScalarType t, const GemmArgs& a, size_t workspace_bytes) {
  const int64_t es = static_cast<int64_t>(scalar_size(t));
  const int64_t es_c = a.c_f32 ? int64_t(sizeof(float)) : es;
  return PlanKey{handle,
                 t,
                 a.c_f32,
                 a.transA,
                 a.transB,
                 a.epilogue,
                 a.batch,
                 a.M,
                 a.N,
                 a.K,
                 a.lda,
                 a.ldb,
                 a.ldc,
                 a.batch > 1 ? a.strideA : 0,
                 a.batch > 1 ? a.strideB : 0,
                 a.batch > 1 ? a.strideC : 0,
                 has_aux(a.epilogue) ? a.ldaux : 0,
                 alignment_of(a.A, a.strideA * es),
                 alignment_of(a.B, a.strideB * es),
                 alignment_of(a.C, a.strideC * es_c),
                 has_bias(a.epilogue) ? alignment_of(a.bias, 0) : 0u,
                 has_aux(a.epilogue) ? alignment_of(a.aux, 0) : 0u,
                 workspace_bytes};
}

// BiasGradA: the sums over k of our op(A) are those of cuBLASLt's op(B) (see the top).
cublasLtEpilogue_t epilogue_of(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::Bias:
      return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::GeluBias:
      return CUBLASLT_EPILOGUE_GELU_BIAS;
    case GemmEpilogue::GeluAuxBias:
      return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case GemmEpilogue::BiasGradA:
      return CUBLASLT_EPILOGUE_BGRADB;
    case GemmEpilogue::DGelu:
      return CUBLASLT_EPILOGUE_DGELU;
    case GemmEpilogue::None:
      break;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// The descriptors of one call shape and the algorithm cuBLASLt's heuristic picked for it.
struct GemmPlan {
  MatmulDesc desc;
  std::optional<Layout> first, second, out;
  cublasLtMatmulAlgo_t algo{};
  bool supported = true;  // false: no algorithm has this epilogue for this shape

  // `bias`, `aux`: the first call's, which the heuristic inspects (their alignment is in the
  // key).
  GemmPlan(const PlanKey& k, const void* bias, void* aux) {
    const cudaDataType_t type = k.t == ScalarType::F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t c_type = k.c_f32 ? CUDA_R_32F : type;  // C, D and the bias
    desc.set(CUBLASLT_MATMUL_DESC_TRANSA, k.transB ? CUBLAS_OP_T : CUBLAS_OP_N);  // our B
    desc.set(CUBLASLT_MATMUL_DESC_TRANSB, k.transA ? CUBLAS_OP_T : CUBLAS_OP_N);  // our A
    if (k.epilogue != GemmEpilogue::None) {
      const cublasLtEpilogue_t epi = epilogue_of(k.epilogue);
      desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, epi);
      if (has_bias(k.epilogue)) {
        desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, c_type);
        desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
      }
      if (has_aux(k.epilogue)) {
        // Our row-major M x N aux is cuBLASLt's column-major N x M: leading dimension ldaux.
        desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
        desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, k.ldaux);
      }
    }
    // Column-major shapes of the stored matrices.
    first.emplace(type, k.transB ? k.K : k.N, k.transB ? k.N : k.K, k.ldb, k.batch, k.strideB);
    second.emplace(type, k.transA ? k.M : k.K, k.transA ? k.K : k.M, k.lda, k.batch, k.strideA);
    out.emplace(c_type, k.N, k.M, k.ldc, k.batch, k.strideC);

    Preference pref;
    const uint64_t ws = k.workspace_bytes;
    pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.alignB);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.alignA);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.alignC);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.alignC);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t h = cublasLtMatmulAlgoGetHeuristic(
        k.handle, desc.d, first->l, second->l, out->l, out->l, pref.p, 1, &result, &found);
    if (h == CUBLAS_STATUS_NOT_SUPPORTED) {
      found = 0;
    } else {
      check_lt(h, "heuristic");
    }
    if (found == 0 && k.epilogue != GemmEpilogue::None) {
      supported = false;  // the caller runs the product without the epilogue
      return;
    }
    if (found == 0) {
      throw std::runtime_error("cuBLASLt has no algorithm for a " + std::string(scalar_name(k.t)) +
                               " matmul M=" + std::to_string(k.M) + " N=" + std::to_string(k.N) +
                               " K=" + std::to_string(k.K) + " batch=" + std::to_string(k.batch));
    }
    algo = result.algo;
  }

  // Queues the product of `a` (whose shape is this plan's) on `stream`.
  void run(cublasLtHandle_t handle, const GemmArgs& a, void* workspace, size_t workspace_bytes,
           cudaStream_t stream) {
    // The bias pointer is an input (Bias, GeluBias, GeluAuxBias) or the output (BiasGradA).
    if (has_bias(a.epilogue)) desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, a.bias);
    if (has_aux(a.epilogue)) {
      desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, a.aux);
    }
    check_lt(cublasLtMatmul(handle, desc.d, &a.alpha, a.B, first->l, a.A, second->l, &a.beta, a.C,
                            out->l, a.C, out->l, &algo, workspace, workspace_bytes, stream),
             "matmul");
  }
};

// Handles the cases cuBLASLt is not asked about; false when the product still has to run.
bool gemm_trivial(ScalarType t, const GemmArgs& a, cudaStream_t stream) {
  check_args(a);
  if (a.M == 0 || a.N == 0 || a.batch == 0) return true;
  if (t != ScalarType::F32 && t != ScalarType::BF16) detail::unsupported("matmul", t);
  if (a.K != 0 && a.alpha != 0.0f) return false;
  if (a.epilogue != GemmEpilogue::None) {
    throw std::invalid_argument("gemm: an epilogue needs K > 0 and alpha != 0");
  }
  TRIDENT_CUDA_FLOAT_DISPATCH(a.c_f32 ? ScalarType::F32 : t, "matmul", {
    TRIDENT_LAUNCH(scale_matrix_kernel<T>, detail::grid_for(a.batch * a.M * a.N, 256), 256, 0,
                   stream)
    (static_cast<T*>(a.C), a.batch, a.M, a.N, a.ldc, a.strideC, a.beta);
    detail::check_launch("scale_matrix_kernel");
  });
  return true;
}

}  // namespace

void gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& a, void* workspace,
          size_t workspace_bytes, cudaStream_t stream) {
  if (gemm_trivial(t, a, stream)) return;
  GemmPlan plan(key_of(handle, t, a, workspace_bytes), a.bias, a.aux);
  if (!plan.supported) {
    throw std::runtime_error("cuBLASLt has no algorithm with this epilogue for a " +
                             std::string(scalar_name(t)) + " matmul M=" + std::to_string(a.M) +
                             " N=" + std::to_string(a.N) + " K=" + std::to_string(a.K));
  }
  plan.run(handle, a, workspace, workspace_bytes, stream);
}

struct GemmPlanCache::Impl {
  std::mutex mu;
  std::unordered_map<PlanKey, std::unique_ptr<GemmPlan>, PlanKeyHash> plans;
  size_t capacity;
  uint64_t hits = 0, misses = 0;
};

GemmPlanCache::GemmPlanCache(size_t capacity) : impl_(std::make_unique<Impl>()) {
  impl_->capacity = std::max<size_t>(capacity, 1);
}
GemmPlanCache::~GemmPlanCache() = default;

bool GemmPlanCache::gemm(cublasLtHandle_t handle, ScalarType t, const GemmArgs& a, void* workspace,
                         size_t workspace_bytes, cudaStream_t stream) {
  if (gemm_trivial(t, a, stream)) return true;
  const PlanKey key = key_of(handle, t, a, workspace_bytes);
  Impl& c = *impl_;
  // Held through the enqueue: a plan's bias pointer is set per call on its shared descriptor.
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.plans.find(key);
  if (it == c.plans.end()) {
    // Throws before the cache changes.
    auto plan = std::make_unique<GemmPlan>(key, a.bias, a.aux);
    // Shapes repeat every step; a cache this full means varying shapes: start again.
    if (c.plans.size() >= c.capacity) c.plans.clear();
    it = c.plans.emplace(key, std::move(plan)).first;
    ++c.misses;
  } else {
    ++c.hits;
  }
  if (!it->second->supported) return false;
  it->second->run(handle, a, workspace, workspace_bytes, stream);
  return true;
}

GemmPlanCache::Stats GemmPlanCache::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return Stats{impl_->plans.size(), impl_->hits, impl_->misses};
}

void GemmPlanCache::clear() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->plans.clear();
}

}  // namespace trident::kernels::cuda
