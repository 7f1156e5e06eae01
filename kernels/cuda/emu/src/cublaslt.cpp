// Trident's CUDA emulation: cuBLASLt's matmul on the CPU (the scope is listed in cublasLt.h).
//
// Conventions are cuBLASLt's own. Every matrix is column-major (element (r, c) at r + c * ld) or,
// with CUBLASLT_ORDER_ROW, row-major (r * ld + c); a layout describes the STORED matrix. With
// m x n the shape of D (and C), op(A) is m x k, so A is stored m x k (OP_N) or k x m (OP_T);
// op(B) is k x n, so B is stored k x n or n x k. Batch b of a matrix starts b * its
// STRIDED_BATCH_OFFSET elements after its pointer; every layout must have the same BATCH_COUNT.
//
//   D = epilogue(alpha op(A) op(B) + beta C [+ bias])        bias: m values, one per row of D
//   GELU is the tanh approximation (GPT-2). The *_AUX forward epilogues store the GELU input to
//   EPILOGUE_AUX_POINTER (m x n, column-major, EPILOGUE_AUX_LD); DGELU multiplies by gelu'(aux).
//   Bias gradients go to BIAS_POINTER: DGELU_BGRAD the row sums of D (m), BGRADA the row sums of
//   op(A) (m, a reduction over k), BGRADB the column sums of op(B) (n, also over k).
//
// At call time everything (attributes, alpha, beta, pointers) is checked and copied into a
// Problem, as the real library reads them at the call; the work is one op queued on the stream
// (cublaslt_matmul.cpp computes it).
//
// Algorithms: the heuristic's one algorithm records the alignment it assumes for A, B, C and D,
// min(16, the preference's MIN_ALIGNMENT_*_BYTES), for the bias and aux pointers (their
// alignment when the heuristic ran: the real one reads them from the descriptor) and the
// workspace it uses (a float m x n accumulator, within the preference's limit). cublasLtMatmul
// refuses a pointer, or batch stride, less aligned than that with CUBLAS_STATUS_NOT_SUPPORTED
// where a GPU kernel would fault on a misaligned address, and a workspace smaller than the
// algorithm's with CUBLAS_STATUS_INVALID_VALUE. Every operand range must lie in one cudaMalloc
// allocation of the stream's device (else CUBLAS_STATUS_INVALID_VALUE and a message).
#include <cublasLt.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cublaslt_matmul.hpp"
#include "emu_runtime.hpp"

// The opaque objects behind the handles.
struct cublasLtContext {};

namespace {

// ---------------------------------------------------------------------------------------------
// Attributes: each object stores its attributes as bytes, with the size the real library
// requires of a Set or Get (an exact match) and the real default.

class Attributes {
 public:
  void define(int id, size_t size, const void* default_value) {
    Slot& s = slots_[id];
    s.size = size;
    std::memcpy(s.bytes, default_value, size);
  }
  template <typename T>
  void define(int id, T default_value) {
    define(id, sizeof(T), &default_value);
  }

  cublasStatus_t set(int id, const void* buf, size_t size) {
    auto it = slots_.find(id);
    if (it == slots_.end() || buf == nullptr || size != it->second.size) {
      return CUBLAS_STATUS_INVALID_VALUE;
    }
    std::memcpy(it->second.bytes, buf, size);
    return CUBLAS_STATUS_SUCCESS;
  }

  cublasStatus_t get(int id, void* buf, size_t size, size_t* written) const {
    auto it = slots_.find(id);
    if (it == slots_.end()) return CUBLAS_STATUS_INVALID_VALUE;
    if (size == 0) {
      if (written == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
      *written = it->second.size;
      return CUBLAS_STATUS_SUCCESS;
    }
    if (buf == nullptr || size != it->second.size) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(buf, it->second.bytes, size);
    if (written != nullptr) *written = size;
    return CUBLAS_STATUS_SUCCESS;
  }

  template <typename T>
  T value(int id) const {
    T v{};
    std::memcpy(&v, slots_.at(id).bytes, sizeof(T));
    return v;
  }

 private:
  struct Slot {
    size_t size = 0;
    unsigned char bytes[8] = {};
  };
  std::map<int, Slot> slots_;
};

}  // namespace

struct cublasLtMatrixLayoutOpaque_t {
  Attributes attrs;
};
struct cublasLtMatmulDescOpaque_t {
  Attributes attrs;
};
struct cublasLtMatmulPreferenceOpaque_t {
  Attributes attrs;
};

namespace {

using cuemu::lt::Activation;
using cuemu::lt::BiasGrad;
using cuemu::lt::Matrix;
using cuemu::lt::Problem;

// Live objects of one kind: a destroyed or never-created handle is refused instead of read.
template <typename T>
class Registry {
 public:
  // Never destroyed: handles may be released from other objects' static destructors.
  static Registry& instance() {
    static Registry* r = new Registry;
    return *r;
  }
  T* create() {
    auto object = std::make_unique<T>();
    T* p = object.get();
    std::lock_guard<std::mutex> lock(mu_);
    live_.emplace(p, std::move(object));
    return p;
  }
  bool destroy(const T* p) {
    std::unique_ptr<T> doomed;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    doomed = std::move(it->second);
    live_.erase(it);
    return true;
  }
  bool live(const T* p) {
    if (p == nullptr) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return live_.count(p) != 0;
  }

 private:
  std::mutex mu_;
  std::unordered_map<const T*, std::unique_ptr<T>> live_;
};

template <typename T>
bool live(const T* p) {
  return Registry<T>::instance().live(p);
}

cublasStatus_t refuse(cublasStatus_t status, const char* who, const std::string& why) {
  cuemu::report(std::string(who) + ": " + why);
  return status;
}

constexpr int32_t kTypeOfD = -1;  // the default bias / aux data type
constexpr uint64_t kAlgoMagic = 0x54524944454d554cull;
constexpr uint32_t kMaxAssumedAlignment = 16;
constexpr uint32_t kDefaultPreferenceAlignment = 256;

struct TypeInfo {
  int32_t type;
  size_t size;
  const char* name;
};
constexpr TypeInfo kTypes[] = {{CUDA_R_32F, 4, "f32"}, {CUDA_R_16BF, 2, "bf16"},
                               {CUDA_R_16F, 2, "f16"}, {CUDA_R_64F, 8, "f64"},
                               {CUDA_R_8I, 1, "i8"},   {CUDA_R_32I, 4, "i32"}};

size_t element_size(int32_t type) {
  for (const TypeInfo& t : kTypes) {
    if (t.type == type) return t.size;
  }
  return 0;
}

const char* type_name(int32_t type) {
  for (const TypeInfo& t : kTypes) {
    if (t.type == type) return t.name;
  }
  return "an unknown type";
}

// Largest power of two dividing the address and (when non-zero) a byte stride, at most 256.
uint32_t alignment_of(const void* p, uint64_t stride_bytes = 0) {
  uint64_t a = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) | stride_bytes | 256u;
  return static_cast<uint32_t>(a & (~a + 1));
}

struct Refusal {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  std::string why;
};

Refusal refusal(cublasStatus_t status, std::string why) {
  return Refusal{status, std::move(why)};
}

Refusal read_layout(const cublasLtMatrixLayoutOpaque_t& layout, const char* name, Matrix* out) {
  const Attributes& at = layout.attrs;
  Matrix& x = *out;
  x.type = static_cast<int32_t>(at.value<uint32_t>(CUBLASLT_MATRIX_LAYOUT_TYPE));
  const int32_t order = at.value<int32_t>(CUBLASLT_MATRIX_LAYOUT_ORDER);
  const uint64_t rows = at.value<uint64_t>(CUBLASLT_MATRIX_LAYOUT_ROWS);
  const uint64_t cols = at.value<uint64_t>(CUBLASLT_MATRIX_LAYOUT_COLS);
  x.ld = at.value<int64_t>(CUBLASLT_MATRIX_LAYOUT_LD);
  x.batch = at.value<int32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
  x.batch_stride = at.value<int64_t>(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
  const std::string who = std::string("layout of ") + name + ": ";
  if (order != CUBLASLT_ORDER_COL && order != CUBLASLT_ORDER_ROW) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED,
                   who + "only CUBLASLT_ORDER_COL and CUBLASLT_ORDER_ROW are emulated");
  }
  if (at.value<int64_t>(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET) != 0 ||
      at.value<uint32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_MODE) != 0) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED,
                   who + "planar-complex and pointer-array batches are not emulated");
  }
  if (rows > uint64_t(INT32_MAX) || cols > uint64_t(INT32_MAX)) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED,
                   who + std::to_string(rows) + " x " + std::to_string(cols) + " exceeds int32");
  }
  x.rows = static_cast<int64_t>(rows);
  x.cols = static_cast<int64_t>(cols);
  const int64_t contiguous = order == CUBLASLT_ORDER_COL ? x.rows : x.cols;
  if (x.ld < std::max<int64_t>(1, contiguous)) {
    return refusal(CUBLAS_STATUS_INVALID_VALUE,
                   who + "leading dimension " + std::to_string(x.ld) + " < " +
                       (order == CUBLASLT_ORDER_COL ? "rows " : "cols ") +
                       std::to_string(contiguous));
  }
  if (x.batch < 1) {
    return refusal(CUBLAS_STATUS_INVALID_VALUE,
                   who + "batch count " + std::to_string(x.batch) + " < 1");
  }
  if (x.batch_stride < 0) {
    return refusal(CUBLAS_STATUS_INVALID_VALUE,
                   who + "negative batch stride " + std::to_string(x.batch_stride));
  }
  x.row_stride = order == CUBLASLT_ORDER_COL ? 1 : x.ld;
  x.col_stride = order == CUBLASLT_ORDER_COL ? x.ld : 1;
  return {};
}

bool is_transpose(int32_t op) {
  return op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

std::string shape(const Matrix& x) {
  return std::to_string(x.rows) + " x " + std::to_string(x.cols);
}

// Everything cublasLtMatmul and the heuristic check on the descriptors alone.
Refusal describe(const cublasLtMatmulDescOpaque_t& desc, const cublasLtMatrixLayoutOpaque_t& la,
                 const cublasLtMatrixLayoutOpaque_t& lb, const cublasLtMatrixLayoutOpaque_t& lc,
                 const cublasLtMatrixLayoutOpaque_t& ld, Problem* out) {
  Problem& p = *out;
  const Attributes& at = desc.attrs;
  const int32_t compute = at.value<int32_t>(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE);
  const int32_t scale = at.value<int32_t>(CUBLASLT_MATMUL_DESC_SCALE_TYPE);
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED, "compute type " + std::to_string(compute) +
                                                    " is not emulated (CUBLAS_COMPUTE_32F is)");
  }
  if (scale != CUDA_R_32F) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED, std::string("scale type ") + type_name(scale) +
                                                    " with CUBLAS_COMPUTE_32F (f32 is needed)");
  }
  if (at.value<int32_t>(CUBLASLT_MATMUL_DESC_POINTER_MODE) != CUBLASLT_POINTER_MODE_HOST) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED, "only host alpha / beta are emulated");
  }
  if (at.value<int32_t>(CUBLASLT_MATMUL_DESC_TRANSC) != CUBLAS_OP_N) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED, "TRANSC must be CUBLAS_OP_N");
  }
  for (int id :
       {CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_C_SCALE_POINTER, CUBLASLT_MATMUL_DESC_D_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER}) {
    if (at.value<const void*>(id) != nullptr) {
      return refusal(CUBLAS_STATUS_NOT_SUPPORTED,
                     "scale / amax pointers (fp8 matmuls) are not supported for f32 / bf16");
    }
  }
  const int32_t op_a = at.value<int32_t>(CUBLASLT_MATMUL_DESC_TRANSA);
  const int32_t op_b = at.value<int32_t>(CUBLASLT_MATMUL_DESC_TRANSB);
  for (int32_t op : {op_a, op_b}) {
    if (op != CUBLAS_OP_N && op != CUBLAS_OP_T && op != CUBLAS_OP_C) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE, "TRANSA / TRANSB " + std::to_string(op));
    }
  }
  p.trans_a = is_transpose(op_a);
  p.trans_b = is_transpose(op_b);

  const char* names[4] = {"A", "B", "C", "D"};
  const cublasLtMatrixLayoutOpaque_t* layouts[4] = {&la, &lb, &lc, &ld};
  Matrix* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) {
    Refusal r = read_layout(*layouts[i], names[i], mats[i]);
    if (r.status != CUBLAS_STATUS_SUCCESS) return r;
  }
  p.m = p.d.rows;
  p.n = p.d.cols;
  p.k = p.trans_a ? p.a.rows : p.a.cols;
  const int64_t a_m = p.trans_a ? p.a.cols : p.a.rows;
  const int64_t b_k = p.trans_b ? p.b.cols : p.b.rows;
  const int64_t b_n = p.trans_b ? p.b.rows : p.b.cols;
  const std::string dims = " (D is " + shape(p.d) + ", A " + shape(p.a) +
                           (p.trans_a ? " transposed" : "") + ", B " + shape(p.b) +
                           (p.trans_b ? " transposed" : "") + ", C " + shape(p.c) + ")";
  if (a_m != p.m) return refusal(CUBLAS_STATUS_INVALID_VALUE, "op(A) rows != D rows" + dims);
  if (b_k != p.k) return refusal(CUBLAS_STATUS_INVALID_VALUE, "op(B) rows != op(A) cols" + dims);
  if (b_n != p.n) return refusal(CUBLAS_STATUS_INVALID_VALUE, "op(B) cols != D cols" + dims);
  if (p.c.rows != p.m || p.c.cols != p.n) {
    return refusal(CUBLAS_STATUS_INVALID_VALUE, "C and D differ in shape" + dims);
  }
  if (p.a.batch != p.d.batch || p.b.batch != p.d.batch || p.c.batch != p.d.batch) {
    return refusal(CUBLAS_STATUS_INVALID_VALUE,
                   "batch counts differ: A " + std::to_string(p.a.batch) + ", B " +
                       std::to_string(p.b.batch) + ", C " + std::to_string(p.c.batch) + ", D " +
                       std::to_string(p.d.batch));
  }

  const bool in_ok = p.a.type == p.b.type && (p.a.type == CUDA_R_32F || p.a.type == CUDA_R_16BF);
  const bool out_ok =
      p.c.type == p.d.type &&
      (p.d.type == CUDA_R_32F || (p.d.type == CUDA_R_16BF && p.a.type == CUDA_R_16BF));
  if (!in_ok || !out_ok) {
    return refusal(CUBLAS_STATUS_NOT_SUPPORTED,
                   std::string("types A ") + type_name(p.a.type) + ", B " + type_name(p.b.type) +
                       ", C " + type_name(p.c.type) + ", D " + type_name(p.d.type) +
                       " with CUBLAS_COMPUTE_32F (emulated: all f32, all bf16, bf16 A/B with "
                       "f32 C/D)");
  }

  p.epilogue_id = at.value<uint32_t>(CUBLASLT_MATMUL_DESC_EPILOGUE);
  switch (p.epilogue_id) {
    case CUBLASLT_EPILOGUE_DEFAULT:
      break;
    case CUBLASLT_EPILOGUE_RELU_BIAS:
      p.bias_in = true;
      [[fallthrough]];
    case CUBLASLT_EPILOGUE_RELU:
      p.activation = Activation::kRelu;
      break;
    case CUBLASLT_EPILOGUE_BIAS:
      p.bias_in = true;
      break;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
      p.aux_out = true;
      [[fallthrough]];
    case CUBLASLT_EPILOGUE_GELU_BIAS:
      p.bias_in = true;
      p.activation = Activation::kGelu;
      break;
    case CUBLASLT_EPILOGUE_GELU_AUX:
      p.aux_out = true;
      [[fallthrough]];
    case CUBLASLT_EPILOGUE_GELU:
      p.activation = Activation::kGelu;
      break;
    case CUBLASLT_EPILOGUE_DGELU_BGRAD:
      p.bias_grad = BiasGrad::kOfD;
      [[fallthrough]];
    case CUBLASLT_EPILOGUE_DGELU:
      p.activation = Activation::kDgelu;
      p.aux_in = true;
      break;
    case CUBLASLT_EPILOGUE_BGRADA:
      p.bias_grad = BiasGrad::kOfA;
      break;
    case CUBLASLT_EPILOGUE_BGRADB:
      p.bias_grad = BiasGrad::kOfB;
      break;
    case CUBLASLT_EPILOGUE_RELU_AUX:
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
    case CUBLASLT_EPILOGUE_DRELU:
    case CUBLASLT_EPILOGUE_DRELU_BGRAD:
      return refusal(CUBLAS_STATUS_NOT_SUPPORTED, "the bit-mask ReLU epilogues are not emulated");
    default:
      return refusal(CUBLAS_STATUS_INVALID_VALUE,
                     "unknown epilogue " + std::to_string(p.epilogue_id));
  }

  if (p.bias_in || p.bias_grad != BiasGrad::kNone) {
    p.bias = at.value<const void*>(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
    p.bias_batch_stride = at.value<int64_t>(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE);
    p.bias_length = p.bias_grad == BiasGrad::kOfB ? p.n : p.m;
    const int32_t t = at.value<int32_t>(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE);
    p.bias_type = t == kTypeOfD ? p.d.type : t;
    if (p.bias == nullptr) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE,
                     "epilogue " + std::to_string(p.epilogue_id) + " without a BIAS_POINTER");
    }
    if (p.bias_type != p.d.type) {
      return refusal(CUBLAS_STATUS_NOT_SUPPORTED, std::string("bias type ") +
                                                      type_name(p.bias_type) + " with D of type " +
                                                      type_name(p.d.type) + " (they must match)");
    }
    if (p.bias_batch_stride < 0 ||
        (p.bias_grad != BiasGrad::kNone && p.d.batch > 1 && p.bias_batch_stride < p.bias_length)) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE,
                     "bias batch stride " + std::to_string(p.bias_batch_stride) + " for " +
                         std::to_string(p.d.batch) + " batches of bias gradients of length " +
                         std::to_string(p.bias_length));
    }
  }
  if (p.aux_in || p.aux_out) {
    p.aux = at.value<const void*>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER);
    p.aux_ld = at.value<int64_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD);
    p.aux_batch_stride = at.value<int64_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE);
    const int32_t t = at.value<int32_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE);
    p.aux_type = t == kTypeOfD ? p.d.type : t;
    const std::string who = "epilogue " + std::to_string(p.epilogue_id) + ": ";
    if (p.aux == nullptr) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE, who + "no EPILOGUE_AUX_POINTER");
    }
    if (p.aux_ld < std::max<int64_t>(1, p.m) || p.aux_ld % 8 != 0) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE,
                     who + "EPILOGUE_AUX_LD " + std::to_string(p.aux_ld) +
                         " must be a multiple of 8 and >= the rows of D, " + std::to_string(p.m));
    }
    if (p.aux_batch_stride < 0 || p.aux_batch_stride % 8 != 0 ||
        (p.aux_out && p.d.batch > 1 && p.aux_batch_stride < p.aux_ld * p.n)) {
      return refusal(CUBLAS_STATUS_INVALID_VALUE,
                     who + "EPILOGUE_AUX_BATCH_STRIDE " + std::to_string(p.aux_batch_stride) +
                         " (a multiple of 8; batches of the output must not overlap)");
    }
    if (p.aux_type != p.d.type) {
      return refusal(CUBLAS_STATUS_NOT_SUPPORTED, who + "aux type " + type_name(p.aux_type) +
                                                      " with D of type " + type_name(p.d.type) +
                                                      " (they must match)");
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// The algorithm: cublasLtMatmulAlgo_t::data holds a tag, the workspace and the alignments.

enum AlgoSlot { kTag = 0, kWorkspace = 1, kAlignA = 2, kAlignBias = 6, kAlignAux = 7 };
const char* const kOperandNames[4] = {"A", "B", "C", "D"};
const char* const kAlignmentAttributes[4] = {
    "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES",
    "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES"};

// The workspace the algorithm would like: the float accumulator of one batch.
uint64_t wanted_workspace(const Problem& p) {
  const uint64_t bytes = uint64_t(p.m) * uint64_t(p.n) * sizeof(float);
  return (bytes + 255) / 256 * 256;
}

struct StatusInfo {
  cublasStatus_t status;
  const char* name;
  const char* text;
};
constexpr StatusInfo kStatuses[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED",
     "the library or the handle was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE",
     "an invalid value was given (a null pointer, inconsistent sizes or layouts)"},
    {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH",
     "the device does not support the requested feature"},
    {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR", "access to device memory failed"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED",
     "the work could not be launched on the device"},
    {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal operation failed"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED",
     "the requested combination of types, layouts or alignments is not supported"},
    {CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR", "license error"}};

std::string hex(const void* ptr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", ptr);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The API.

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (lightHandle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  *lightHandle = Registry<cublasLtContext>::instance().create();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  return Registry<cublasLtContext>::instance().destroy(lightHandle) ? CUBLAS_STATUS_SUCCESS
                                                                    : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char* cublasLtGetStatusName(cublasStatus_t status) {
  for (const StatusInfo& s : kStatuses) {
    if (s.status == status) return s.name;
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  for (const StatusInfo& s : kStatuses) {
    if (s.status == status) return s.text;
  }
  return "unknown cuBLAS status";
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (matLayout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  cublasLtMatrixLayoutOpaque_t* l = Registry<cublasLtMatrixLayoutOpaque_t>::instance().create();
  Attributes& at = l->attrs;
  at.define<uint32_t>(CUBLASLT_MATRIX_LAYOUT_TYPE, static_cast<uint32_t>(type));
  at.define<int32_t>(CUBLASLT_MATRIX_LAYOUT_ORDER, CUBLASLT_ORDER_COL);
  at.define<uint64_t>(CUBLASLT_MATRIX_LAYOUT_ROWS, rows);
  at.define<uint64_t>(CUBLASLT_MATRIX_LAYOUT_COLS, cols);
  at.define<int64_t>(CUBLASLT_MATRIX_LAYOUT_LD, ld);
  at.define<int32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, 1);
  at.define<int64_t>(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, 0);
  at.define<int64_t>(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET, 0);
  at.define<uint32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_MODE, 0);
  *matLayout = l;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  if (matLayout == nullptr) return CUBLAS_STATUS_SUCCESS;
  return Registry<cublasLtMatrixLayoutOpaque_t>::instance().destroy(matLayout)
             ? CUBLAS_STATUS_SUCCESS
             : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t sizeInBytes) {
  if (!live(matLayout)) return CUBLAS_STATUS_INVALID_VALUE;
  return matLayout->attrs.set(attr, buf, sizeInBytes);
}

cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t matLayout,
                                                cublasLtMatrixLayoutAttribute_t attr, void* buf,
                                                size_t sizeInBytes, size_t* sizeWritten) {
  if (!live(matLayout)) return CUBLAS_STATUS_INVALID_VALUE;
  return matLayout->attrs.get(attr, buf, sizeInBytes, sizeWritten);
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc,
                                        cublasComputeType_t computeType, cudaDataType_t scaleType) {
  if (matmulDesc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  cublasLtMatmulDescOpaque_t* d = Registry<cublasLtMatmulDescOpaque_t>::instance().create();
  Attributes& at = d->attrs;
  const void* null = nullptr;
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, computeType);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_SCALE_TYPE, scaleType);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_POINTER_MODE, CUBLASLT_POINTER_MODE_HOST);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_N);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_TRANSC, CUBLAS_OP_N);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_FILL_MODE, CUBLAS_FILL_MODE_FULL);
  at.define<uint32_t>(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_DEFAULT);
  at.define(CUBLASLT_MATMUL_DESC_BIAS_POINTER, null);
  at.define<int64_t>(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, 0);
  at.define(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, null);
  at.define<int64_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, 0);
  at.define<int64_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, 0);
  at.define<int64_t>(CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE, 0);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, 0);
  for (int id :
       {CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_C_SCALE_POINTER, CUBLASLT_MATMUL_DESC_D_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER,
        CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER}) {
    at.define(id, null);
  }
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, kTypeOfD);
  at.define<int8_t>(CUBLASLT_MATMUL_DESC_FAST_ACCUM, 0);
  at.define<int32_t>(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, kTypeOfD);
  *matmulDesc = d;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  if (matmulDesc == nullptr) return CUBLAS_STATUS_SUCCESS;
  return Registry<cublasLtMatmulDescOpaque_t>::instance().destroy(matmulDesc)
             ? CUBLAS_STATUS_SUCCESS
             : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t sizeInBytes) {
  if (!live(matmulDesc)) return CUBLAS_STATUS_INVALID_VALUE;
  return matmulDesc->attrs.set(attr, buf, sizeInBytes);
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                              cublasLtMatmulDescAttributes_t attr, void* buf,
                                              size_t sizeInBytes, size_t* sizeWritten) {
  if (!live(matmulDesc)) return CUBLAS_STATUS_INVALID_VALUE;
  return matmulDesc->attrs.get(attr, buf, sizeInBytes, sizeWritten);
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  cublasLtMatmulPreferenceOpaque_t* p =
      Registry<cublasLtMatmulPreferenceOpaque_t>::instance().create();
  Attributes& at = p->attrs;
  at.define<uint32_t>(CUBLASLT_MATMUL_PREF_SEARCH_MODE, CUBLASLT_SEARCH_BEST_FIT);
  at.define<uint64_t>(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, 0);
  at.define<uint32_t>(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, 0x7);
  for (int id = CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
       id <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES; ++id) {
    at.define<uint32_t>(id, kDefaultPreferenceAlignment);
  }
  at.define<float>(CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT, 0.0f);
  at.define<uint64_t>(CUBLASLT_MATMUL_PREF_IMPL_MASK, ~uint64_t{0});
  *pref = p;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  if (pref == nullptr) return CUBLAS_STATUS_SUCCESS;
  return Registry<cublasLtMatmulPreferenceOpaque_t>::instance().destroy(pref)
             ? CUBLAS_STATUS_SUCCESS
             : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t sizeInBytes) {
  if (!live(pref)) return CUBLAS_STATUS_INVALID_VALUE;
  return pref->attrs.set(attr, buf, sizeInBytes);
}

cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    void* buf, size_t sizeInBytes,
                                                    size_t* sizeWritten) {
  if (!live(pref)) return CUBLAS_STATUS_INVALID_VALUE;
  return pref->attrs.get(attr, buf, sizeInBytes, sizeWritten);
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc, cublasLtMatrixLayout_t Adesc,
    cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount) {
  static const char* const who = "cublasLtMatmulAlgoGetHeuristic";
  if (!live(lightHandle)) {
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, who, "the handle is not a live cublasLt handle");
  }
  if (returnAlgoCount != nullptr) *returnAlgoCount = 0;
  if (!live(operationDesc) || !live(Adesc) || !live(Bdesc) || !live(Cdesc) || !live(Ddesc) ||
      !live(preference)) {
    return refuse(CUBLAS_STATUS_INVALID_VALUE, who, "a descriptor is null or destroyed");
  }
  if (requestedAlgoCount <= 0 || heuristicResultsArray == nullptr || returnAlgoCount == nullptr) {
    return refuse(
        CUBLAS_STATUS_INVALID_VALUE, who,
        "requestedAlgoCount " + std::to_string(requestedAlgoCount) + " or a null result pointer");
  }
  Problem p;
  const Refusal r = describe(*operationDesc, *Adesc, *Bdesc, *Cdesc, *Ddesc, &p);
  if (r.status != CUBLAS_STATUS_SUCCESS) return refuse(r.status, who, r.why);

  cublasLtMatmulAlgo_t algo{};
  algo.data[kTag] = kAlgoMagic;
  const Matrix* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) {
    const uint32_t pref = preference->attrs.value<uint32_t>(
        static_cast<int>(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES) + i);
    const uint32_t assumed = std::max<uint32_t>(1, std::min(kMaxAssumedAlignment, pref));
    if (assumed < element_size(mats[i]->type)) {
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, who,
                    std::string("no algorithm for ") + kOperandNames[i] + " aligned to " +
                        std::to_string(pref) + " bytes (" + type_name(mats[i]->type) +
                        " elements)");
    }
    algo.data[kAlignA + i] = assumed;
  }
  // The real heuristic reads the bias and aux pointers to learn their alignment.
  const void* bias = operationDesc->attrs.value<const void*>(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
  const void* aux =
      operationDesc->attrs.value<const void*>(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER);
  algo.data[kAlignBias] =
      bias != nullptr ? std::min(kMaxAssumedAlignment, alignment_of(bias)) : kMaxAssumedAlignment;
  algo.data[kAlignAux] =
      aux != nullptr ? std::min(kMaxAssumedAlignment, alignment_of(aux)) : kMaxAssumedAlignment;
  const uint64_t max_workspace =
      preference->attrs.value<uint64_t>(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
  algo.data[kWorkspace] = std::min(max_workspace, wanted_workspace(p));

  cublasLtMatmulHeuristicResult_t& result = heuristicResultsArray[0];
  result = cublasLtMatmulHeuristicResult_t{};
  result.algo = algo;
  result.workspaceSize = static_cast<size_t>(algo.data[kWorkspace]);
  result.state = CUBLAS_STATUS_SUCCESS;
  const double tiles = double((p.m + 127) / 128) * double((p.n + 127) / 128) * p.d.batch;
  result.wavesCount = static_cast<float>(std::max(tiles / 132.0, 1.0 / 132.0));
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                              const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                              const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream) {
  static const char* const who = "cublasLtMatmul";
  if (!live(lightHandle)) {
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, who, "the handle is not a live cublasLt handle");
  }
  if (!live(computeDesc) || !live(Adesc) || !live(Bdesc) || !live(Cdesc) || !live(Ddesc)) {
    return refuse(CUBLAS_STATUS_INVALID_VALUE, who, "a descriptor is null or destroyed");
  }
  if (alpha == nullptr || beta == nullptr) {
    return refuse(CUBLAS_STATUS_INVALID_VALUE, who, "alpha or beta is null");
  }
  Problem p;
  const Refusal r = describe(*computeDesc, *Adesc, *Bdesc, *Cdesc, *Ddesc, &p);
  if (r.status != CUBLAS_STATUS_SUCCESS) return refuse(r.status, who, r.why);
  std::memcpy(&p.alpha, alpha, sizeof(float));
  std::memcpy(&p.beta, beta, sizeof(float));
  p.A = A;
  p.B = B;
  p.C = C;
  p.D = D;

  if (C == D && C != nullptr &&
      (p.c.type != p.d.type || p.c.ld != p.d.ld || p.c.row_stride != p.d.row_stride ||
       p.c.batch_stride != p.d.batch_stride)) {
    return refuse(CUBLAS_STATUS_INVALID_VALUE, who,
                  "in-place C == D needs the same layout for C and D");
  }

  // The algorithm's assumptions.
  uint64_t assumed[8] = {};
  uint64_t algo_workspace = 0;
  if (algo != nullptr) {
    if (algo->data[kTag] != kAlgoMagic) {
      return refuse(CUBLAS_STATUS_INVALID_VALUE, who,
                    "algo was not filled by cublasLtMatmulAlgoGetHeuristic");
    }
    std::copy(algo->data, algo->data + 8, assumed);
    algo_workspace = algo->data[kWorkspace];
  }
  if (workspaceSizeInBytes < algo_workspace) {
    return refuse(CUBLAS_STATUS_INVALID_VALUE, who,
                  "workspace of " + std::to_string(workspaceSizeInBytes) +
                      " bytes, the algorithm needs " + std::to_string(algo_workspace));
  }
  p.workspace = workspace;
  p.workspace_bytes = static_cast<size_t>(algo_workspace);

  // Operands the computation touches: their ranges, alignments and devices.
  struct Range {
    const char* name;
    const void* ptr;
    int64_t elements;
    int32_t type;
    uint64_t stride_bytes;  // batch stride, 0 when there is one batch
    uint64_t assumed;       // alignment the algorithm assumes (0: that of the element)
  };
  const size_t es_in = element_size(p.a.type), es_out = element_size(p.d.type);
  const bool batched = p.d.batch > 1;
  std::vector<Range> ranges;
  const Matrix* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i) {
    const Matrix& x = *mats[i];
    const bool read = i != 2 || p.beta != 0.0f;
    const bool summed =
        (i == 0 && p.bias_grad == BiasGrad::kOfA) || (i == 1 && p.bias_grad == BiasGrad::kOfB);
    const bool needed =
        (i < 2 && p.k > 0 && (p.alpha != 0.0f || summed)) || (i == 2 && read) || i == 3;
    if (!needed || x.extent() == 0) continue;
    const size_t es = i < 2 ? es_in : es_out;
    ranges.push_back({kOperandNames[i], ptrs[i], x.extent(), x.type,
                      batched ? uint64_t(x.batch_stride) * es : 0, assumed[kAlignA + i]});
  }
  if (p.bias != nullptr && p.bias_length > 0) {
    ranges.push_back({"the bias (BIAS_POINTER)", p.bias,
                      int64_t(p.d.batch - 1) * p.bias_batch_stride + p.bias_length, p.bias_type,
                      batched ? uint64_t(p.bias_batch_stride) * es_out : 0, assumed[kAlignBias]});
  }
  if (p.aux != nullptr && p.m > 0 && p.n > 0) {
    ranges.push_back({"the aux matrix (EPILOGUE_AUX_POINTER)", p.aux,
                      int64_t(p.d.batch - 1) * p.aux_batch_stride + (p.n - 1) * p.aux_ld + p.m,
                      p.aux_type, batched ? uint64_t(p.aux_batch_stride) * es_out : 0,
                      assumed[kAlignAux]});
  }
  if (p.workspace_bytes > 0) {
    ranges.push_back({"the workspace", workspace, int64_t(p.workspace_bytes), CUDA_R_8I, 0, 0});
  }

  const int stream_device = cuemu::stream_device(stream);
  for (const Range& x : ranges) {
    const size_t es = element_size(x.type);
    const size_t bytes = size_t(x.elements) * es;
    int device = -1;
    if (x.ptr == nullptr || !cuemu::is_device_range(x.ptr, bytes, &device)) {
      return refuse(CUBLAS_STATUS_INVALID_VALUE, who,
                    std::string(x.name) + ": [" + hex(x.ptr) + ", +" + std::to_string(bytes) +
                        " bytes) is not inside one live cudaMalloc allocation (host memory, "
                        "freed, or a layout larger than the buffer)");
    }
    if (stream_device >= 0 && device != stream_device) {
      return refuse(CUBLAS_STATUS_INVALID_VALUE, who,
                    std::string(x.name) + " is memory of device " + std::to_string(device) +
                        ", the stream belongs to device " + std::to_string(stream_device));
    }
    const uint64_t need = std::max<uint64_t>(x.assumed, es);
    const uint64_t have = alignment_of(x.ptr, x.stride_bytes);
    if (have < need) {
      const bool from_pref = x.name[1] == '\0';  // A, B, C or D
      const int index = from_pref ? x.name[0] - 'A' : 0;
      return refuse(
          CUBLAS_STATUS_NOT_SUPPORTED, who,
          std::string(x.name) + " at " + hex(x.ptr) +
              (x.stride_bytes != 0
                   ? " with a batch stride of " + std::to_string(x.stride_bytes) + " bytes"
                   : std::string()) +
              " is aligned to " + std::to_string(have) + " bytes; the algorithm assumes " +
              std::to_string(need) +
              (from_pref ? std::string(" (tell the heuristic through ") +
                               kAlignmentAttributes[index] + ")"
                         : std::string(" (the pointer the heuristic saw was aligned so)")));
    }
  }

  const cudaError_t e = cuemu::enqueue(
      stream, [p] { cuemu::lt::run_matmul(p); }, who);
  if (e != cudaSuccess) {
    return refuse(CUBLAS_STATUS_EXECUTION_FAILED, who,
                  std::string("queueing on the stream failed: ") + cudaGetErrorName(e));
  }
  return CUBLAS_STATUS_SUCCESS;
}
