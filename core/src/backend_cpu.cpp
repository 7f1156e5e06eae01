// The CPU backend: forwards every entry of the op table to kernels/cpu with the element type
// resolved once per call (f32 and f64; f64 serves gradient checks).
#include <cstring>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/error.hpp"
#include "trident/kernels/cpu/activation.hpp"
#include "trident/kernels/cpu/attention.hpp"
#include "trident/kernels/cpu/cross_entropy.hpp"
#include "trident/kernels/cpu/dropout.hpp"
#include "trident/kernels/cpu/elementwise.hpp"
#include "trident/kernels/cpu/embedding.hpp"
#include "trident/kernels/cpu/gemm.hpp"
#include "trident/kernels/cpu/layernorm.hpp"
#include "trident/kernels/cpu/optimizer.hpp"

namespace trident {

namespace {

namespace k = kernels::cpu;

// Calls BODY with `scalar_t` bound to the C++ type of a floating dtype.
#define TRIDENT_CPU_FLOAT_DISPATCH(dtype, op, ...)                                       \
  switch (dtype) {                                                                       \
    case DType::F32: {                                                                   \
      using scalar_t = float;                                                            \
      __VA_ARGS__;                                                                       \
      break;                                                                             \
    }                                                                                    \
    case DType::F64: {                                                                   \
      using scalar_t = double;                                                           \
      __VA_ARGS__;                                                                       \
      break;                                                                             \
    }                                                                                    \
    default:                                                                             \
      throw Error(str_cat(op, ": dtype ", dtype_name(dtype), " is not supported on the CPU " \
                          "(use f32 or f64)"));                                          \
  }

template <typename T> T* P(void* p) { return static_cast<T*>(p); }
template <typename T> const T* P(const void* p) { return static_cast<const T*>(p); }

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void fill(DType t, void* out, double value, int64_t n) override {
    switch (t) {
      case DType::I32: {
        auto* o = P<int32_t>(out);
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int32_t>(value);
        return;
      }
      case DType::I64: {
        auto* o = P<int64_t>(out);
        for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int64_t>(value);
        return;
      }
      case DType::U8: std::memset(out, static_cast<int>(value), static_cast<size_t>(n)); return;
      default: break;
    }
    TRIDENT_CPU_FLOAT_DISPATCH(t, "fill",
                               k::fill(P<scalar_t>(out), static_cast<scalar_t>(value), n));
  }

  void copy_strided(DType t, void* out, const void* in, const int64_t* in_strides,
                    const int64_t* shape, int ndim) override {
    switch (dtype_size(t)) {
      case 4: k::copy_strided(P<float>(out), P<float>(in), in_strides, shape, ndim); return;
      case 8: k::copy_strided(P<double>(out), P<double>(in), in_strides, shape, ndim); return;
      default: break;
    }
    // 1- and 2-byte types: a plain index walk.
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    const size_t es = dtype_size(t);
    std::vector<int64_t> idx(static_cast<size_t>(ndim), 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t off = 0;
      for (int d = 0; d < ndim; ++d) off += idx[d] * in_strides[d];
      std::memcpy(P<char>(out) + i * es, P<char>(in) + off * es, es);
      for (int d = ndim - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }

  void convert(DType to, void* out, DType from, const void* in, int64_t n) override {
    if (to == from) {
      std::memcpy(out, in, static_cast<size_t>(n) * dtype_size(to));
    } else if (to == DType::F64 && from == DType::F32) {
      k::convert(P<double>(out), P<float>(in), n);
    } else if (to == DType::F32 && from == DType::F64) {
      k::convert(P<float>(out), P<double>(in), n);
    } else if (to == DType::F32 && from == DType::I32) {
      for (int64_t i = 0; i < n; ++i) P<float>(out)[i] = static_cast<float>(P<int32_t>(in)[i]);
    } else {
      throw Error(str_cat("cannot convert ", dtype_name(from), " to ", dtype_name(to),
                          " on the CPU"));
    }
  }

  void binary_strided(BinaryOpKind op, DType t, void* out, const void* a,
                      const int64_t* a_strides, const void* b, const int64_t* b_strides,
                      const int64_t* shape, int ndim) override {
    const auto kop = static_cast<k::BinaryOp>(op);
    TRIDENT_CPU_FLOAT_DISPATCH(t, "binary op",
                               k::binary_strided(kop, P<scalar_t>(out), P<scalar_t>(a), a_strides,
                                                 P<scalar_t>(b), b_strides, shape, ndim));
  }
  void reduce_sum_to(DType t, void* out, const void* in, const int64_t* shape,
                     const bool* reduce_dim, int ndim) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "sum", k::reduce_sum_to(P<scalar_t>(out), P<scalar_t>(in), shape, reduce_dim, ndim));
  }
  void scale(DType t, void* out, const void* in, double alpha, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "scale", k::scale(P<scalar_t>(out), P<scalar_t>(in), static_cast<scalar_t>(alpha), n));
  }
  void axpy(DType t, void* y, const void* x, double alpha, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "axpy", k::axpy(P<scalar_t>(y), P<scalar_t>(x), static_cast<scalar_t>(alpha), n));
  }
  double sum(DType t, const void* x, int64_t n) override {
    double r = 0;
    TRIDENT_CPU_FLOAT_DISPATCH(t, "sum", r = k::sum(P<scalar_t>(x), n));
    return r;
  }
  double sum_squares(DType t, const void* x, int64_t n) override {
    double r = 0;
    TRIDENT_CPU_FLOAT_DISPATCH(t, "sum_squares", r = k::sum_squares(P<scalar_t>(x), n));
    return r;
  }
  void add_bias(DType t, void* out, const void* in, const void* bias, int64_t rows,
                int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "add_bias",
                               k::add_bias(P<scalar_t>(out), P<scalar_t>(in), P<scalar_t>(bias),
                                           rows, cols));
  }
  void bias_backward(DType t, void* dbias, const void* dout, int64_t rows,
                     int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "bias_backward", k::bias_backward(P<scalar_t>(dbias), P<scalar_t>(dout), rows, cols));
  }

  void gemm_batched(DType t, bool transA, bool transB, int64_t batch, int64_t M, int64_t N,
                    int64_t K, double alpha, const void* A, int64_t lda, int64_t strideA,
                    const void* B, int64_t ldb, int64_t strideB, double beta, void* C,
                    int64_t ldc, int64_t strideC) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "matmul", {
      if (batch == 1) {
        k::gemm(transA, transB, M, N, K, static_cast<scalar_t>(alpha), P<scalar_t>(A), lda,
                P<scalar_t>(B), ldb, static_cast<scalar_t>(beta), P<scalar_t>(C), ldc);
      } else {
        k::gemm_batched(transA, transB, batch, M, N, K, static_cast<scalar_t>(alpha),
                        P<scalar_t>(A), lda, strideA, P<scalar_t>(B), ldb, strideB,
                        static_cast<scalar_t>(beta), P<scalar_t>(C), ldc, strideC);
      }
    });
  }

  void embedding_forward(DType t, void* out, const int32_t* ids, const void* table, int64_t N,
                         int64_t V, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "embedding", k::embedding_forward(P<scalar_t>(out), ids, P<scalar_t>(table), N, V, C));
  }
  void embedding_backward(DType t, void* dtable, const void* dout, const int32_t* ids,
                          int64_t N, int64_t V, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "embedding_backward",
                               k::embedding_backward(P<scalar_t>(dtable), P<scalar_t>(dout), ids,
                                                     N, V, C));
  }
  void layernorm_forward(DType t, void* out, void* mean, void* rstd, const void* inp,
                         const void* weight, const void* bias, int64_t N, int64_t C,
                         double eps) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "layernorm",
        k::layernorm_forward(P<scalar_t>(out), P<scalar_t>(mean), P<scalar_t>(rstd),
                             P<scalar_t>(inp), P<scalar_t>(weight), P<scalar_t>(bias), N, C,
                             static_cast<scalar_t>(eps)));
  }
  void layernorm_backward(DType t, void* dinp, void* dweight, void* dbias, const void* dout,
                          const void* inp, const void* weight, const void* mean,
                          const void* rstd, int64_t N, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "layernorm_backward",
        k::layernorm_backward(P<scalar_t>(dinp), P<scalar_t>(dweight), P<scalar_t>(dbias),
                              P<scalar_t>(dout), P<scalar_t>(inp), P<scalar_t>(weight),
                              P<scalar_t>(mean), P<scalar_t>(rstd), N, C));
  }
  void gelu_forward(DType t, void* out, const void* inp, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "gelu", k::gelu_forward(P<scalar_t>(out), P<scalar_t>(inp), n));
  }
  void gelu_backward(DType t, void* dinp, const void* inp, const void* dout,
                     int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "gelu_backward",
        k::gelu_backward(P<scalar_t>(dinp), P<scalar_t>(inp), P<scalar_t>(dout), n));
  }
  void softmax_forward(DType t, void* out, const void* inp, int64_t rows,
                       int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "softmax", k::softmax_forward(P<scalar_t>(out), P<scalar_t>(inp), rows, cols));
  }
  void softmax_backward(DType t, void* dinp, const void* out, const void* dout, int64_t rows,
                        int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "softmax_backward",
                               k::softmax_backward(P<scalar_t>(dinp), P<scalar_t>(out),
                                                   P<scalar_t>(dout), rows, cols));
  }
  void attention_forward(DType t, void* out, void* att, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "attention",
                               k::attention_forward(P<scalar_t>(out), P<scalar_t>(att),
                                                    P<scalar_t>(qkv), B, T, C, NH));
  }
  void attention_backward(DType t, void* dqkv, const void* dout, const void* qkv,
                          const void* att, int64_t B, int64_t T, int64_t C,
                          int64_t NH) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "attention_backward",
        k::attention_backward(P<scalar_t>(dqkv), P<scalar_t>(dout), P<scalar_t>(qkv),
                              P<scalar_t>(att), B, T, C, NH));
  }
  void cross_entropy_forward(DType t, void* losses, void* lse, const void* logits,
                             const int32_t* targets, int64_t N, int64_t V) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "cross_entropy",
                               k::cross_entropy_forward(P<scalar_t>(losses), P<scalar_t>(lse),
                                                        P<scalar_t>(logits), targets, N, V));
  }
  void cross_entropy_backward(DType t, void* dlogits, const void* logits, const void* lse,
                              const int32_t* targets, const void* dlosses, int64_t N,
                              int64_t V) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "cross_entropy_backward",
        k::cross_entropy_backward(P<scalar_t>(dlogits), P<scalar_t>(logits), P<scalar_t>(lse),
                                  targets, P<scalar_t>(dlosses), N, V));
  }
  void dropout_forward(DType t, void* out, void* mask, const void* inp, int64_t n, float p,
                       uint64_t seed, uint64_t offset) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "dropout",
                               k::dropout_forward(P<scalar_t>(out), P<scalar_t>(mask),
                                                  P<scalar_t>(inp), n, p, seed, offset));
  }
  void dropout_backward(DType t, void* dinp, const void* dout, const void* mask,
                        int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "dropout_backward",
        k::dropout_backward(P<scalar_t>(dinp), P<scalar_t>(dout), P<scalar_t>(mask), n));
  }

  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay,
                    int64_t step) override {
    k::adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
  }
  void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr,
                  float momentum, float dampening, float weight_decay, bool nesterov,
                  bool first_step) override {
    k::sgd_update(param, grad, buf, n, lr, momentum, dampening, weight_decay, nesterov,
                  first_step);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace trident
