// The CPU backend: forwards every entry of the op table to kernels/cpu with the element type
// resolved once per call. f32 and f64 (for gradient checks) run the kernels directly; bf16 runs
// the f32 kernels on staged copies: inputs widened to f32 scratch buffers (exact), outputs
// written to f32 scratch and rounded back to bf16 to nearest even. Slow, but every bf16 op
// computes exactly "f32 math, then one rounding of each output", the definition the CUDA
// backend's bf16 kernels are tested against; the mixed-precision path runs without a GPU.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/error.hpp"
#include "trident/kernels/cpu/activation.hpp"
#include "trident/kernels/cpu/attention.hpp"
#include "trident/kernels/cpu/convert.hpp"
#include "trident/kernels/cpu/cross_entropy.hpp"
#include "trident/kernels/cpu/dropout.hpp"
#include "trident/kernels/cpu/elementwise.hpp"
#include "trident/kernels/cpu/embedding.hpp"
#include "trident/kernels/cpu/gemm.hpp"
#include "trident/kernels/cpu/gqa_pack.hpp"
#include "trident/kernels/cpu/layernorm.hpp"
#include "trident/kernels/cpu/optimizer.hpp"
#include "trident/kernels/cpu/rms_norm.hpp"
#include "trident/kernels/cpu/rope.hpp"
#include "trident/kernels/cpu/swiglu.hpp"

namespace trident {

namespace {

namespace k = kernels::cpu;

template <typename T>
T* P(void* p) {
  return static_cast<T*>(p);
}
template <typename T>
const T* P(const void* p) {
  return static_cast<const T*>(p);
}

// How an op body reaches its buffers: io.in<T>(p, n) for a buffer the kernel reads,
// io.out<T>(p, n) for one it overwrites, io.inout<T>(p, n) for one it reads and writes; n is the
// buffer's extent in elements. Direct hands the pointers through (f32, f64).
struct Direct {
  template <typename T>
  const T* in(const void* p, int64_t) {
    return P<T>(p);
  }
  template <typename T>
  T* out(void* p, int64_t) {
    return P<T>(p);
  }
  template <typename T>
  T* inout(void* p, int64_t) {
    return P<T>(p);
  }
  void commit() {}
};

// Bf16Staging serves bf16 buffers to an f32 kernel: in() and inout() widen into scratch, out()
// hands out zeroed scratch; commit() (after the kernel returned) rounds every out/inout scratch
// back into its bf16 buffer. Aliased buffers (add_bias in place) get separate scratch, which
// the f32 kernels allow. A kernel that throws leaves the outputs untouched.
class Bf16Staging {
 public:
  template <typename T>
  const float* in(const void* p, int64_t n) {
    static_assert(std::is_same<T, float>::value, "bf16 is staged in f32");
    float* s = scratch(n);
    k::convert_from_bf16(s, P<uint16_t>(p), n);
    return s;
  }
  template <typename T>
  float* out(void* p, int64_t n) {
    static_assert(std::is_same<T, float>::value, "bf16 is staged in f32");
    float* s = scratch(n);
    outputs_.push_back({P<uint16_t>(p), s, n});
    return s;
  }
  template <typename T>
  float* inout(void* p, int64_t n) {
    float* s = const_cast<float*>(in<T>(p, n));
    outputs_.push_back({P<uint16_t>(p), s, n});
    return s;
  }
  void commit() {
    for (const Output& o : outputs_) k::convert_to_bf16(o.dst, o.src, o.n);
  }

 private:
  struct Output {
    uint16_t* dst;
    const float* src;
    int64_t n;
  };
  float* scratch(int64_t n) {
    buffers_.emplace_back(static_cast<size_t>(n));
    return buffers_.back().data();
  }
  std::vector<std::vector<float>> buffers_;  // moving the outer vector keeps the data pointers
  std::vector<Output> outputs_;
};

// Runs the statements with `scalar_t` bound to the kernel's element type and `io` to the
// buffer access of the dtype (see Direct and Bf16Staging).
#define TRIDENT_CPU_FLOAT_DISPATCH(dtype, op, ...)           \
  switch (dtype) {                                           \
    case DType::F32: {                                       \
      using scalar_t = float;                                \
      Direct io;                                             \
      __VA_ARGS__;                                           \
      break;                                                 \
    }                                                        \
    case DType::F64: {                                       \
      using scalar_t = double;                               \
      Direct io;                                             \
      __VA_ARGS__;                                           \
      break;                                                 \
    }                                                        \
    case DType::BF16: {                                      \
      using scalar_t = float;                                \
      Bf16Staging io;                                        \
      __VA_ARGS__;                                           \
      io.commit();                                           \
      break;                                                 \
    }                                                        \
    default:                                                 \
      throw Error(str_cat(op, ": dtype ", dtype_name(dtype), \
                          " is not supported on the CPU "    \
                          "(use f32, f64 or bf16)"));        \
  }

int64_t numel_of(const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

constexpr int dtype_pair(DType to, DType from) {
  return static_cast<int>(to) * 16 + static_cast<int>(from);
}

// Elements spanned by a strided view (strides >= 0, 0 on broadcast dimensions).
int64_t strided_extent(const int64_t* shape, const int64_t* strides, int ndim) {
  int64_t last = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

// Elements spanned by `batch` row-major matrices of rows x cols with row stride ld.
int64_t matrices_extent(int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

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
      case DType::U8:
        std::memset(out, static_cast<int>(value), static_cast<size_t>(n));
        return;
      case DType::BF16: {
        const uint16_t v = k::f64_to_bf16(value);
        auto* o = P<uint16_t>(out);
        for (int64_t i = 0; i < n; ++i) o[i] = v;
        return;
      }
      default:
        break;
    }
    TRIDENT_CPU_FLOAT_DISPATCH(t, "fill",
                               k::fill(io.out<scalar_t>(out, n), static_cast<scalar_t>(value), n));
  }

  void copy_strided(DType t, void* out, const void* in, const int64_t* in_strides,
                    const int64_t* shape, int ndim) override {
    switch (dtype_size(t)) {
      case 4:
        k::copy_strided(P<float>(out), P<float>(in), in_strides, shape, ndim);
        return;
      case 8:
        k::copy_strided(P<double>(out), P<double>(in), in_strides, shape, ndim);
        return;
      default:
        break;
    }
    // 1- and 2-byte types (u8, bf16, f16) move bitwise: a plain index walk.
    const int64_t n = numel_of(shape, ndim);
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
    switch (dtype_pair(to, from)) {
      case dtype_pair(DType::F64, DType::F32):
        k::convert(P<double>(out), P<float>(in), n);
        return;
      case dtype_pair(DType::F32, DType::F64):
        k::convert(P<float>(out), P<double>(in), n);
        return;
      case dtype_pair(DType::BF16, DType::F32):
        k::convert_to_bf16(P<uint16_t>(out), P<float>(in), n);
        return;
      case dtype_pair(DType::BF16, DType::F64):
        k::convert_to_bf16(P<uint16_t>(out), P<double>(in), n);
        return;
      case dtype_pair(DType::F32, DType::BF16):
        k::convert_from_bf16(P<float>(out), P<uint16_t>(in), n);
        return;
      case dtype_pair(DType::F64, DType::BF16):
        k::convert_from_bf16(P<double>(out), P<uint16_t>(in), n);
        return;
      case dtype_pair(DType::F32, DType::I32):
        for (int64_t i = 0; i < n; ++i) P<float>(out)[i] = static_cast<float>(P<int32_t>(in)[i]);
        return;
      default:
        break;
    }
    TRIDENT_CHECK(to == from, "cannot convert ", dtype_name(from), " to ", dtype_name(to),
                  " on the CPU (f32, f64 and bf16 convert among themselves)");
    std::memcpy(out, in, static_cast<size_t>(n) * dtype_size(to));
  }

  void accumulate_converted(DType dst_t, void* dst, DType src_t, const void* src,
                            int64_t n) override {
    switch (dtype_pair(dst_t, src_t)) {
      case dtype_pair(DType::F32, DType::BF16):
        k::accumulate_converted(P<float>(dst), P<uint16_t>(src), n);
        return;
      case dtype_pair(DType::F64, DType::BF16):
        k::accumulate_converted(P<double>(dst), P<uint16_t>(src), n);
        return;
      case dtype_pair(DType::BF16, DType::F32):
        k::accumulate_converted(P<uint16_t>(dst), P<float>(src), n);
        return;
      case dtype_pair(DType::F32, DType::F64):
        k::accumulate_converted(P<float>(dst), P<double>(src), n);
        return;
      case dtype_pair(DType::F64, DType::F32):
        k::accumulate_converted(P<double>(dst), P<float>(src), n);
        return;
      default:
        break;
    }
    TRIDENT_CHECK(dst_t == src_t, "accumulate_converted: ", dtype_name(src_t), " into ",
                  dtype_name(dst_t), " is not supported on the CPU (f32, f64 and bf16 pairs)");
    axpy(dst_t, dst, src, 1.0, n);
  }

  void binary_strided(BinaryOpKind op, DType t, void* out, const void* a, const int64_t* a_strides,
                      const void* b, const int64_t* b_strides, const int64_t* shape,
                      int ndim) override {
    const auto kop = static_cast<k::BinaryOp>(op);
    const int64_t n = numel_of(shape, ndim);
    const int64_t na = strided_extent(shape, a_strides, ndim);
    const int64_t nb = strided_extent(shape, b_strides, ndim);
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "binary op",
        k::binary_strided(kop, io.out<scalar_t>(out, n), io.in<scalar_t>(a, na), a_strides,
                          io.in<scalar_t>(b, nb), b_strides, shape, ndim));
  }
  void reduce_sum_to(DType t, void* out, const void* in, const int64_t* shape,
                     const bool* reduce_dim, int ndim) override {
    int64_t n_out = 1;
    for (int d = 0; d < ndim; ++d) n_out *= reduce_dim[d] ? 1 : shape[d];
    const int64_t n_in = numel_of(shape, ndim);
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "sum",
        k::reduce_sum_to(io.out<scalar_t>(out, n_out), io.in<scalar_t>(in, n_in), shape, reduce_dim,
                         ndim));
  }
  void scale(DType t, void* out, const void* in, double alpha, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "scale",
                               k::scale(io.out<scalar_t>(out, n), io.in<scalar_t>(in, n),
                                        static_cast<scalar_t>(alpha), n));
  }
  void axpy(DType t, void* y, const void* x, double alpha, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "axpy",
        k::axpy(io.inout<scalar_t>(y, n), io.in<scalar_t>(x, n), static_cast<scalar_t>(alpha), n));
  }
  double sum(DType t, const void* x, int64_t n) override {
    double r = 0;
    TRIDENT_CPU_FLOAT_DISPATCH(t, "sum", r = k::sum(io.in<scalar_t>(x, n), n));
    return r;
  }
  double sum_squares(DType t, const void* x, int64_t n) override {
    double r = 0;
    TRIDENT_CPU_FLOAT_DISPATCH(t, "sum_squares", r = k::sum_squares(io.in<scalar_t>(x, n), n));
    return r;
  }
  void add_bias(DType t, void* out, const void* in, const void* bias, int64_t rows,
                int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "add_bias",
        k::add_bias(io.out<scalar_t>(out, rows * cols), io.in<scalar_t>(in, rows * cols),
                    io.in<scalar_t>(bias, cols), rows, cols));
  }
  void bias_backward(DType t, void* dbias, const void* dout, int64_t rows, int64_t cols) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "bias_backward",
                               k::bias_backward(io.out<scalar_t>(dbias, cols),
                                                io.in<scalar_t>(dout, rows * cols), rows, cols));
  }

  void gemm_batched(DType t, bool transA, bool transB, int64_t batch, int64_t M, int64_t N,
                    int64_t K, double alpha, const void* A, int64_t lda, int64_t strideA,
                    const void* B, int64_t ldb, int64_t strideB, double beta, void* C, int64_t ldc,
                    int64_t strideC) override {
    const int64_t na = transA ? matrices_extent(batch, strideA, K, M, lda)
                              : matrices_extent(batch, strideA, M, K, lda);
    const int64_t nb = transB ? matrices_extent(batch, strideB, N, K, ldb)
                              : matrices_extent(batch, strideB, K, N, ldb);
    const int64_t nc = matrices_extent(batch, strideC, M, N, ldc);
    TRIDENT_CPU_FLOAT_DISPATCH(t, "matmul", {
      const scalar_t* a = io.in<scalar_t>(A, na);
      const scalar_t* b = io.in<scalar_t>(B, nb);
      // C is read when beta != 0 and may have gaps between rows (ldc > N): staged both ways.
      scalar_t* c = io.inout<scalar_t>(C, nc);
      const auto al = static_cast<scalar_t>(alpha), be = static_cast<scalar_t>(beta);
      if (batch == 1) {
        k::gemm(transA, transB, M, N, K, al, a, lda, b, ldb, be, c, ldc);
      } else {
        k::gemm_batched(transA, transB, batch, M, N, K, al, a, lda, strideA, b, ldb, strideB, be, c,
                        ldc, strideC);
      }
    });
  }

  // dy and x widened to f32 (exact for bf16), dW by the f32 gemm with beta 1 when accumulating,
  // the bias sums in f32 in row order.
  void linear_weight_grad_f32(DType t, float* dw, float* dbias, const void* dy, const void* x,
                              int64_t R, int64_t N, int64_t K, bool accumulate_w,
                              bool accumulate_bias) override {
    TRIDENT_CHECK(t == DType::F32 || t == DType::BF16, "linear_weight_grad_f32: dtype ",
                  dtype_name(t), " (f32 gradients of bf16 or f32 operands)");
    Bf16Staging staging;
    const float* g = t == DType::F32 ? P<float>(dy) : staging.in<float>(dy, R * N);
    const float* a = t == DType::F32 ? P<float>(x) : staging.in<float>(x, R * K);
    k::gemm(true, false, N, K, R, 1.0f, g, N, a, K, accumulate_w ? 1.0f : 0.0f, dw, K);
    if (dbias == nullptr) return;
    std::vector<float> sums(static_cast<size_t>(N), 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t j = 0; j < N; ++j) sums[size_t(j)] += g[r * N + j];
    }
    for (int64_t j = 0; j < N; ++j)
      dbias[j] = accumulate_bias ? dbias[j] + sums[size_t(j)] : sums[size_t(j)];
  }

  void embedding_forward(DType t, void* out, const int32_t* ids, const void* table, int64_t N,
                         int64_t V, int64_t C, int64_t first, int64_t vocab) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "embedding",
        k::embedding_forward(io.out<scalar_t>(out, N * C), ids, io.in<scalar_t>(table, V * C), N, V,
                             C, first, vocab));
  }
  void embedding_backward(DType t, void* dtable, const void* dout, const int32_t* ids, int64_t N,
                          int64_t V, int64_t C, int64_t first, int64_t vocab,
                          bool accumulate) override {
    TRIDENT_CHECK(!accumulate, "internal: the CPU embedding backward does not accumulate");
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "embedding_backward",
        k::embedding_backward(io.out<scalar_t>(dtable, V * C), io.in<scalar_t>(dout, N * C), ids, N,
                              V, C, first, vocab));
  }
  // mean and rstd are in stats_dtype(t), the kernel's scalar_t (f32 for bf16): passed through
  // unstaged, never rounded to bf16.
  void layernorm_forward(DType t, void* out, void* mean, void* rstd, const void* inp,
                         const void* weight, const void* bias, int64_t N, int64_t C,
                         double eps) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "layernorm",
        k::layernorm_forward(io.out<scalar_t>(out, N * C), P<scalar_t>(mean), P<scalar_t>(rstd),
                             io.in<scalar_t>(inp, N * C), io.in<scalar_t>(weight, C),
                             io.in<scalar_t>(bias, C), N, C, static_cast<scalar_t>(eps)));
  }
  void layernorm_backward(DType t, void* dinp, void* dweight, void* dbias, const void* dout,
                          const void* inp, const void* weight, const void* mean, const void* rstd,
                          int64_t N, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "layernorm_backward",
        k::layernorm_backward(io.out<scalar_t>(dinp, N * C), io.out<scalar_t>(dweight, C),
                              io.out<scalar_t>(dbias, C), io.in<scalar_t>(dout, N * C),
                              io.in<scalar_t>(inp, N * C), io.in<scalar_t>(weight, C),
                              P<scalar_t>(mean), P<scalar_t>(rstd), N, C));
  }
  // bf16: the residual is rounded before it is normalised, as an add then a layer norm would.
  void residual_layernorm_forward(DType t, void* residual, void* out, void* mean, void* rstd,
                                  const void* x, const void* delta, const void* weight,
                                  const void* bias, int64_t N, int64_t C, double eps) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "residual_layernorm",
        k::residual_layernorm_forward(
            io.out<scalar_t>(residual, N * C), io.out<scalar_t>(out, N * C), P<scalar_t>(mean),
            P<scalar_t>(rstd), io.in<scalar_t>(x, N * C), io.in<scalar_t>(delta, N * C),
            io.in<scalar_t>(weight, C), io.in<scalar_t>(bias, C), N, C, static_cast<scalar_t>(eps),
            t == DType::BF16));
  }
  void residual_layernorm_backward(DType t, void* dinp, void* dweight, void* dbias,
                                   const void* dresidual, const void* dout, const void* residual,
                                   const void* weight, const void* mean, const void* rstd,
                                   int64_t N, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "residual_layernorm_backward",
        k::residual_layernorm_backward(
            io.out<scalar_t>(dinp, N * C), io.out<scalar_t>(dweight, C), io.out<scalar_t>(dbias, C),
            dresidual != nullptr ? io.in<scalar_t>(dresidual, N * C) : nullptr,
            io.in<scalar_t>(dout, N * C), io.in<scalar_t>(residual, N * C),
            io.in<scalar_t>(weight, C), P<scalar_t>(mean), P<scalar_t>(rstd), N, C));
  }
  void gelu_forward(DType t, void* out, const void* inp, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "gelu", k::gelu_forward(io.out<scalar_t>(out, n), io.in<scalar_t>(inp, n), n));
  }
  void gelu_backward(DType t, void* dinp, const void* inp, const void* dout, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "gelu_backward",
                               k::gelu_backward(io.out<scalar_t>(dinp, n), io.in<scalar_t>(inp, n),
                                                io.in<scalar_t>(dout, n), n));
  }
  void softmax_forward(DType t, void* out, const void* inp, int64_t rows, int64_t cols) override {
    const int64_t n = rows * cols;
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "softmax",
        k::softmax_forward(io.out<scalar_t>(out, n), io.in<scalar_t>(inp, n), rows, cols));
  }
  void softmax_backward(DType t, void* dinp, const void* out, const void* dout, int64_t rows,
                        int64_t cols) override {
    const int64_t n = rows * cols;
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "softmax_backward",
        k::softmax_backward(io.out<scalar_t>(dinp, n), io.in<scalar_t>(out, n),
                            io.in<scalar_t>(dout, n), rows, cols));
  }
  void attention_forward(DType t, void* out, void* att, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "attention",
        k::attention_forward(io.out<scalar_t>(out, B * T * C),
                             io.out<scalar_t>(att, B * NH * T * T),
                             io.in<scalar_t>(qkv, B * T * 3 * C), B, T, C, NH));
  }
  // The CPU kernel recomputes from the saved probabilities; it does not need `out`.
  void attention_backward(DType t, void* dqkv, const void* dout, const void* qkv,
                          const void* /*out*/, const void* att, int64_t B, int64_t T, int64_t C,
                          int64_t NH) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "attention_backward",
        k::attention_backward(io.out<scalar_t>(dqkv, B * T * 3 * C),
                              io.in<scalar_t>(dout, B * T * C), io.in<scalar_t>(qkv, B * T * 3 * C),
                              io.in<scalar_t>(att, B * NH * T * T), B, T, C, NH));
  }
  // Losses, lse, dlosses and the slice statistics are in stats_dtype(t), the kernel's scalar_t
  // (f32 for bf16): passed through unstaged; only logits and dlogits are staged.
  void cross_entropy_forward(DType t, void* losses, void* lse, const void* logits,
                             const int32_t* targets, int64_t N, int64_t V) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "cross_entropy",
        k::cross_entropy_forward(P<scalar_t>(losses), P<scalar_t>(lse),
                                 io.in<scalar_t>(logits, N * V), targets, N, V));
  }
  void cross_entropy_backward(DType t, void* dlogits, const void* logits, const void* lse,
                              const int32_t* targets, const void* dlosses, int64_t N, int64_t V,
                              int64_t vocab_start) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "cross_entropy_backward",
        k::cross_entropy_backward(io.out<scalar_t>(dlogits, N * V), io.in<scalar_t>(logits, N * V),
                                  P<scalar_t>(lse), targets, P<scalar_t>(dlosses), N, V,
                                  vocab_start));
  }
  void cross_entropy_fused(DType t, void* logits, void* losses, void* dloss, const int32_t* targets,
                           int64_t N, int64_t V, int64_t vocab, double grad_scale) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "cross_entropy_fused",
        k::cross_entropy_fused(
            dloss != nullptr ? io.inout<scalar_t>(logits, N * V)
                             : const_cast<scalar_t*>(io.in<scalar_t>(logits, N * V)),
            P<scalar_t>(losses), P<scalar_t>(dloss), targets, N, V, vocab, grad_scale));
  }
  void cross_entropy_fused_rescale(DType t, void* x, const void* factor, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "cross_entropy_fused_rescale", {
      if (*P<scalar_t>(factor) == scalar_t(1)) break;  // nothing to stage either
      k::cross_entropy_fused_rescale(io.inout<scalar_t>(x, n), P<scalar_t>(factor), n);
    });
  }
  void cross_entropy_shard_stats(DType t, void* stats, const void* logits, const int32_t* targets,
                                 int64_t N, int64_t V, int64_t vocab_start) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "cross_entropy_shard_stats",
        k::cross_entropy_shard_stats(P<scalar_t>(stats), io.in<scalar_t>(logits, N * V), targets, N,
                                     V, vocab_start));
  }
  void cross_entropy_shard_combine(DType t, void* losses, void* lse, const void* stats,
                                   const int32_t* targets, int64_t N, int parts) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "cross_entropy_shard_combine", {
      (void)io;  // statistics only: nothing to stage
      k::cross_entropy_shard_combine(P<scalar_t>(losses), P<scalar_t>(lse), P<scalar_t>(stats),
                                     targets, N, parts);
    });
  }
  void cross_entropy_mean(DType t, void* mean, void* inv_count, const void* losses,
                          const int32_t* targets, int64_t N) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "cross_entropy_mean", {
      (void)io;  // statistics only: nothing to stage
      k::cross_entropy_mean(P<scalar_t>(mean), P<scalar_t>(inv_count), P<scalar_t>(losses), targets,
                            N);
    });
  }
  void dropout_forward(DType t, void* out, void* mask, const void* inp, int64_t n, float p,
                       uint64_t seed, uint64_t offset) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "dropout",
        k::dropout_forward(io.out<scalar_t>(out, n), io.out<scalar_t>(mask, n),
                           io.in<scalar_t>(inp, n), n, p, seed, offset));
  }
  void dropout_backward(DType t, void* dinp, const void* dout, const void* mask,
                        int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "dropout_backward",
        k::dropout_backward(io.out<scalar_t>(dinp, n), io.in<scalar_t>(dout, n),
                            io.in<scalar_t>(mask, n), n));
  }

  // rstd is in stats_dtype(t), the kernel's scalar_t: passed through unstaged, as layer norm's.
  void rms_norm_forward(DType t, void* out, void* rstd, const void* inp, const void* weight,
                        int64_t N, int64_t C, double eps) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "rms_norm",
        k::rms_norm_forward(io.out<scalar_t>(out, N * C), P<scalar_t>(rstd),
                            io.in<scalar_t>(inp, N * C), io.in<scalar_t>(weight, C), N, C,
                            static_cast<scalar_t>(eps)));
  }
  void rms_norm_backward(DType t, void* dinp, void* dweight, const void* dout, const void* inp,
                         const void* weight, const void* rstd, int64_t N, int64_t C) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "rms_norm_backward",
        k::rms_norm_backward(io.out<scalar_t>(dinp, N * C), io.out<scalar_t>(dweight, C),
                             io.in<scalar_t>(dout, N * C), io.in<scalar_t>(inp, N * C),
                             io.in<scalar_t>(weight, C), P<scalar_t>(rstd), N, C));
  }
  void rope_forward(DType t, void* out, const void* inp, int64_t B, int64_t T, int64_t NH,
                    int64_t D, double theta, int64_t position_offset, bool inverse) override {
    const int64_t n = B * T * NH * D;
    TRIDENT_CPU_FLOAT_DISPATCH(t, "rope",
                               k::rope_forward(io.out<scalar_t>(out, n), io.in<scalar_t>(inp, n), B,
                                               T, NH, D, theta, position_offset, inverse));
  }
  void swiglu_forward(DType t, void* out, const void* gate, const void* up, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(t, "swiglu",
                               k::swiglu_forward(io.out<scalar_t>(out, n), io.in<scalar_t>(gate, n),
                                                 io.in<scalar_t>(up, n), n));
  }
  void swiglu_backward(DType t, void* dgate, void* dup, const void* gate, const void* up,
                       const void* dout, int64_t n) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "swiglu_backward",
        k::swiglu_backward(io.out<scalar_t>(dgate, n), io.out<scalar_t>(dup, n),
                           io.in<scalar_t>(gate, n), io.in<scalar_t>(up, n),
                           io.in<scalar_t>(dout, n), n));
  }
  void gqa_pack_forward(DType t, void* qkv, const void* q, const void* k, const void* v, int64_t N,
                        int64_t H, int64_t Hkv, int64_t D) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "gqa_pack_qkv",
        k::gqa_pack_forward(io.out<scalar_t>(qkv, N * 3 * H * D), io.in<scalar_t>(q, N * H * D),
                            io.in<scalar_t>(k, N * Hkv * D), io.in<scalar_t>(v, N * Hkv * D), N, H,
                            Hkv, D));
  }
  void gqa_pack_backward(DType t, void* dq, void* dk, void* dv, const void* dqkv, int64_t N,
                         int64_t H, int64_t Hkv, int64_t D) override {
    TRIDENT_CPU_FLOAT_DISPATCH(
        t, "gqa_pack_qkv_backward",
        k::gqa_pack_backward(io.out<scalar_t>(dq, N * H * D), io.out<scalar_t>(dk, N * Hkv * D),
                             io.out<scalar_t>(dv, N * Hkv * D),
                             io.in<scalar_t>(dqkv, N * 3 * H * D), N, H, Hkv, D));
  }

  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay,
                    int64_t step) override {
    k::adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
  }
  void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
                  float dampening, float weight_decay, bool nesterov, bool first_step) override {
    k::sgd_update(param, grad, buf, n, lr, momentum, dampening, weight_decay, nesterov, first_step);
  }
  // The table is the OptimizerTensor array itself, in host memory.
  size_t convert_table_bytes(int count) const override {
    return sizeof(ConvertTensor) * static_cast<size_t>(std::max(count, 0));
  }
  int64_t convert_table_write(void* table, const ConvertTensor* tensors, int count) override {
    if (count > 0) std::memcpy(table, tensors, convert_table_bytes(count));
    return count;
  }
  void convert_to_bf16_table(const void* table, int count, int64_t) override {
    const auto* ts = static_cast<const ConvertTensor*>(table);
    for (int i = 0; i < count; ++i) convert(DType::BF16, ts[i].dst, DType::F32, ts[i].src, ts[i].n);
  }
  size_t optimizer_table_bytes(int count) const override {
    return sizeof(OptimizerTensor) * static_cast<size_t>(std::max(count, 0));
  }
  int64_t optimizer_table_write(void* table, const OptimizerTensor* tensors, int count) override {
    if (count > 0) std::memcpy(table, tensors, optimizer_table_bytes(count));
    return count;
  }
  void adamw_update_table(const void* table, int count, int64_t, float lr, float beta1, float beta2,
                          float eps, int64_t step, float grad_scale) override {
    const auto* ts = static_cast<const OptimizerTensor*>(table);
    for (int i = 0; i < count; ++i) {
      k::adamw_update(ts[i].param, ts[i].grad, ts[i].state1, ts[i].state2, ts[i].n, lr, beta1,
                      beta2, eps, ts[i].weight_decay, step, grad_scale);
    }
  }
  void sgd_update_table(const void* table, int count, int64_t, float lr, float momentum,
                        float dampening, bool nesterov, float grad_scale) override {
    const auto* ts = static_cast<const OptimizerTensor*>(table);
    for (int i = 0; i < count; ++i) {
      k::sgd_update(ts[i].param, ts[i].grad, ts[i].state1, ts[i].n, lr, momentum, dampening,
                    ts[i].weight_decay, nesterov, ts[i].first_step, grad_scale);
    }
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace trident
