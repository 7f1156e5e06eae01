// The CUDA backend: every entry of the op table forwarded to kernels/cuda on the device's one
// compute stream (work is queued asynchronously; only entries that return a number wait for
// it). Token ids and targets are not read back: the data loader checks them against the
// vocabulary on the host before upload (token_dataset.cpp), and the kernels turn a bad one into
// a zero row or a zero loss, recording its position in a device slot that nothing reads during
// training (a read-back per embedding or loss would stall the host on every micro-batch). One
// CudaBackend per device owns its stream, cuBLASLt handle and workspace, a device slot for
// results and a pinned host slot to read them back. Scratch memory (partial sums, sort buffers)
// comes from the device's caching allocator and is given back when the entry returns, which is
// safe because every later use of a block is queued on the same stream. register_cuda_backend()
// installs the backend, the allocator and host<->device copies; core calls it explicitly on
// first use of a CUDA device.
#ifdef TRIDENT_WITH_CUDA
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/cuda_allocator.hpp"
#include "trident/core/error.hpp"
#include "trident/kernels/cuda/activation.hpp"
#include "trident/kernels/cuda/attention.hpp"
#include "trident/kernels/cuda/bias.hpp"
#include "trident/kernels/cuda/cross_entropy.hpp"
#include "trident/kernels/cuda/dropout.hpp"
#include "trident/kernels/cuda/elementwise.hpp"
#include "trident/kernels/cuda/embedding.hpp"
#include "trident/kernels/cuda/gqa_pack.hpp"
#include "trident/kernels/cuda/layernorm.hpp"
#include "trident/kernels/cuda/matmul.hpp"
#include "trident/kernels/cuda/optimizer.hpp"
#include "trident/kernels/cuda/reduce.hpp"
#include "trident/kernels/cuda/rms_norm.hpp"
#include "trident/kernels/cuda/rope.hpp"
#include "trident/kernels/cuda/swiglu.hpp"
#include "trident/kernels/cuda/train_step.hpp"

namespace trident {

namespace {

namespace kc = kernels::cuda;

// cuBLASLt workspace: 32 MiB, what NVIDIA recommends for Hopper.
constexpr size_t kGemmWorkspaceBytes = size_t(32) << 20;

void check(cudaError_t e, int device, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(str_cat("cuda:", device, ": ", what, " failed: ", cudaGetErrorName(e), " (",
                        cudaGetErrorString(e), ")"));
  }
}

kc::ScalarType st(DType t) {
  switch (t) {
    case DType::F32:
      return kc::ScalarType::F32;
    case DType::F64:
      return kc::ScalarType::F64;
    case DType::BF16:
      return kc::ScalarType::BF16;
    case DType::F16:
      return kc::ScalarType::F16;
    case DType::I32:
      return kc::ScalarType::I32;
    case DType::I64:
      return kc::ScalarType::I64;
    case DType::U8:
      return kc::ScalarType::U8;
  }
  return kc::ScalarType::F32;
}

// --- RAII owners of CUDA handles --------------------------------------------------------
class Stream {
 public:
  explicit Stream(int device) : device_(device) {
    check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), device, "cudaStreamCreate");
  }
  ~Stream() {
    if (s_ != nullptr) (void)cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void synchronize() const { check(cudaStreamSynchronize(s_), device_, "stream synchronize"); }

 private:
  int device_;
  cudaStream_t s_ = nullptr;
};

class LtHandle {
 public:
  explicit LtHandle(int device) {
    const cublasStatus_t s = cublasLtCreate(&h_);
    TRIDENT_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuda:", device,
                  ": cublasLtCreate failed: ", cublasLtGetStatusString(s));
  }
  ~LtHandle() {
    if (h_ != nullptr) (void)cublasLtDestroy(h_);
  }
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  cublasLtHandle_t get() const { return h_; }

 private:
  cublasLtHandle_t h_ = nullptr;
};

// A device buffer held for the backend's lifetime (not from the caching allocator).
class DeviceBuffer {
 public:
  DeviceBuffer(int device, size_t bytes) : bytes_(bytes) {
    check(cudaMalloc(&p_, bytes), device, "cudaMalloc (backend buffer)");
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) (void)cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

class PinnedBuffer {
 public:
  PinnedBuffer(int device, size_t bytes) {
    check(cudaMallocHost(&p_, bytes), device, "cudaMallocHost");
  }
  ~PinnedBuffer() {
    if (p_ != nullptr) (void)cudaFreeHost(p_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// Scratch for one backend entry, from the caching allocator, returned on destruction.
class CallScratch final : public kc::Scratch {
 public:
  explicit CallScratch(Allocator& a) : a_(a) {}
  ~CallScratch() override {
    for (auto& [p, bytes] : blocks_) a_.deallocate(p, bytes);
  }
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;
  void* get(size_t bytes) override {
    void* p = a_.allocate(bytes);
    blocks_.emplace_back(p, bytes);
    return p;
  }

 private:
  Allocator& a_;
  std::vector<std::pair<void*, size_t>> blocks_;
};

template <typename T>
T* P(void* p) {
  return static_cast<T*>(p);
}
template <typename T>
const T* P(const void* p) {
  return static_cast<const T*>(p);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device)
      : device_(device),
        guard_(activate_for_construction(device)),
        stream_(device),
        lt_(device),
        workspace_(device, kGemmWorkspaceBytes),
        result_(device, 64),
        host_(device, 64),
        alloc_(cuda_allocator(device)) {}

  const char* name() const override { return "cuda"; }
  cudaStream_t stream() const { return stream_.get(); }
  int device() const { return device_; }

  void synchronize() override {
    activate();
    stream_.synchronize();
  }

  // --- memory and layout -------------------------------------------------------------
  void fill(DType t, void* out, double value, int64_t n) override {
    run("fill", [&] { kc::fill(st(t), out, value, n, s()); });
  }
  void copy_strided(DType t, void* out, const void* in, const int64_t* in_strides,
                    const int64_t* shape, int ndim) override {
    run("copy_strided", [&] { kc::copy_strided(st(t), out, in, in_strides, shape, ndim, s()); });
  }
  void convert(DType to, void* out, DType from, const void* in, int64_t n) override {
    run("convert", [&] { kc::convert(st(to), out, st(from), in, n, s()); });
  }
  void accumulate_converted(DType dst_t, void* dst, DType src_t, const void* src,
                            int64_t n) override {
    run("accumulate_converted",
        [&] { kc::accumulate_converted(st(dst_t), dst, st(src_t), src, n, s()); });
  }

  // --- element-wise and reductions --------------------------------------------------
  void binary_strided(BinaryOpKind op, DType t, void* out, const void* a, const int64_t* a_strides,
                      const void* b, const int64_t* b_strides, const int64_t* shape,
                      int ndim) override {
    run("binary op", [&] {
      kc::binary_strided(static_cast<kc::BinaryOp>(op), st(t), out, a, a_strides, b, b_strides,
                         shape, ndim, s());
    });
  }
  void reduce_sum_to(DType t, void* out, const void* in, const int64_t* shape,
                     const bool* reduce_dim, int ndim) override {
    run("sum", [&] {
      CallScratch scratch(alloc_);
      kc::reduce_sum_to(st(t), out, in, shape, reduce_dim, ndim, scratch, s());
    });
  }
  void scale(DType t, void* out, const void* in, double alpha, int64_t n) override {
    run("scale", [&] { kc::scale(st(t), out, in, static_cast<float>(alpha), n, s()); });
  }
  void axpy(DType t, void* y, const void* x, double alpha, int64_t n) override {
    run("axpy", [&] { kc::axpy(st(t), y, x, static_cast<float>(alpha), n, s()); });
  }
  double sum(DType t, const void* x, int64_t n) override {
    return read_double("sum", [&](double* out, kc::Scratch& scratch) {
      kc::sum(st(t), x, n, false, out, scratch, s());
    });
  }
  double sum_squares(DType t, const void* x, int64_t n) override {
    return read_double("sum_squares", [&](double* out, kc::Scratch& scratch) {
      kc::sum(st(t), x, n, true, out, scratch, s());
    });
  }
  double sum_squares_multi(DType t, const void* const* xs, const int64_t* ns, int count) override {
    return read_double("sum_squares", [&](double* out, kc::Scratch& scratch) {
      kc::sum_squares_multi(st(t), xs, ns, count, out, scratch, s());
    });
  }
  void add_bias(DType t, void* out, const void* in, const void* bias, int64_t rows,
                int64_t cols) override {
    run("add_bias", [&] { kc::add_bias(st(t), out, in, bias, rows, cols, s()); });
  }
  void bias_backward(DType t, void* dbias, const void* dout, int64_t rows, int64_t cols) override {
    run("bias_backward", [&] {
      CallScratch scratch(alloc_);
      kc::bias_backward(st(t), dbias, dout, rows, cols, scratch, s());
    });
  }

  // --- matrix multiply ---------------------------------------------------------------
  void gemm_batched(DType t, bool transA, bool transB, int64_t batch, int64_t M, int64_t N,
                    int64_t K, double alpha, const void* A, int64_t lda, int64_t strideA,
                    const void* B, int64_t ldb, int64_t strideB, double beta, void* C, int64_t ldc,
                    int64_t strideC) override {
    kc::GemmArgs g;
    g.transA = transA;
    g.transB = transB;
    g.batch = batch;
    g.M = M;
    g.N = N;
    g.K = K;
    g.alpha = static_cast<float>(alpha);
    g.beta = static_cast<float>(beta);
    g.A = A;
    g.lda = lda;
    g.strideA = strideA;
    g.B = B;
    g.ldb = ldb;
    g.strideB = strideB;
    g.C = C;
    g.ldc = ldc;
    g.strideC = strideC;
    run("matmul", [&] { plan_gemm(t, g); });
  }

  void linear_forward(DType t, void* out, const void* x, const void* w, const void* bias, int64_t R,
                      int64_t N, int64_t K) override {
    kc::GemmArgs g = linear_args(x, false, w, true, out, R, N, K);
    if (bias != nullptr) {
      g.epilogue = kc::GemmEpilogue::Bias;
      g.bias = bias;
    }
    run("linear",
        [&] { gemm_fused_or(t, g, [&] { kc::add_bias(st(t), out, out, bias, R, N, s()); }); });
  }
  void linear_gelu_forward(DType t, void* out, void* pre, const void* x, const void* w,
                           const void* bias, int64_t R, int64_t N, int64_t K) override {
    // cuBLASLt's aux leading dimension must be a multiple of 8 elements.
    if (bias == nullptr || N % 8 != 0)
      return Backend::linear_gelu_forward(t, out, pre, x, w, bias, R, N, K);
    kc::GemmArgs g = linear_args(x, false, w, true, out, R, N, K);
    g.epilogue = kc::GemmEpilogue::GeluAuxBias;
    g.bias = bias;
    g.aux = pre;
    g.ldaux = N;
    bool fused = false;
    run("linear_gelu", [&] { fused = plan_gemm(t, g); });
    if (!fused) Backend::linear_gelu_forward(t, out, pre, x, w, bias, R, N, K);
  }
  void linear_weight_grad(DType t, void* dw, void* dbias, const void* dy, const void* x, int64_t R,
                          int64_t N, int64_t K) override {
    kc::GemmArgs g = linear_args(dy, true, x, false, dw, N, K, R);
    if (dbias != nullptr) {
      g.epilogue = kc::GemmEpilogue::BiasGradA;
      g.bias = dbias;
    }
    run("linear_weight_grad", [&] {
      gemm_fused_or(t, g, [&] {
        CallScratch scratch(alloc_);
        kc::bias_backward(st(t), dbias, dy, R, N, scratch, s());
      });
    });
  }

  void linear_weight_grad_f32(DType t, float* dw, float* dbias, const void* dy, const void* x,
                              int64_t R, int64_t N, int64_t K, bool accumulate_w,
                              bool accumulate_bias) override {
    if (R == 0) {  // no rows: zero gradients, or nothing to add
      if (!accumulate_w) fill(DType::F32, dw, 0.0, N * K);
      if (dbias != nullptr && !accumulate_bias) fill(DType::F32, dbias, 0.0, N);
      return;
    }
    // dW (N, K) = dy^T x: bf16 A/B, f32 C/D, beta 1 to add into the master gradient in place.
    kc::GemmArgs g = linear_args(dy, true, x, false, dw, N, K, R);
    g.c_f32 = true;
    g.beta = accumulate_w ? 1.0f : 0.0f;
    run("linear_weight_grad_f32", [&] {
      CallScratch scratch(alloc_);
      // The BGRAD epilogue writes its sums: into dbias, or, to add them, into scratch first.
      float* sums = dbias == nullptr || !accumulate_bias
                        ? dbias
                        : static_cast<float*>(scratch.get(size_t(N) * sizeof(float)));
      if (sums != nullptr) {
        g.epilogue = kc::GemmEpilogue::BiasGradA;
        g.bias = sums;
      }
      gemm_fused_or(t, g, [&] {
        void* narrow = scratch.get(size_t(N) * kc::scalar_size(st(t)));
        kc::bias_backward(st(t), narrow, dy, R, N, scratch, s());
        kc::convert(kc::ScalarType::F32, sums, st(t), narrow, N, s());
      });
      if (sums != dbias) kc::axpy(kc::ScalarType::F32, dbias, sums, 1.0f, N, s());
    });
  }
  void linear_dgelu_backward(DType t, void* dpre, const void* dy, const void* w, const void* pre,
                             int64_t R, int64_t N, int64_t K) override {
    // cuBLASLt's aux leading dimension must be a multiple of 8 elements.
    if (K % 8 != 0 || R == 0 || N == 0)
      return Backend::linear_dgelu_backward(t, dpre, dy, w, pre, R, N, K);
    kc::GemmArgs g = linear_args(dy, false, w, false, dpre, R, K, N);
    g.epilogue = kc::GemmEpilogue::DGelu;
    g.aux = const_cast<void*>(pre);
    g.ldaux = K;
    bool fused = false;
    run("linear_dgelu_backward", [&] { fused = plan_gemm(t, g); });
    if (!fused) Backend::linear_dgelu_backward(t, dpre, dy, w, pre, R, N, K);
  }

  // --- transformer ops ---------------------------------------------------------------
  void embedding_forward(DType t, void* out, const int32_t* ids, const void* table, int64_t N,
                         int64_t V, int64_t C, int64_t first, int64_t vocab) override {
    run("embedding", [&] {
      kc::embedding_forward(st(t), out, ids, table, N, V, C, first, vocab, bad_slot(), s());
    });
  }
  void embedding_backward(DType t, void* dtable, const void* dout, const int32_t* ids, int64_t N,
                          int64_t V, int64_t C, int64_t first, int64_t vocab,
                          bool accumulate) override {
    run("embedding_backward", [&] {
      CallScratch scratch(alloc_);
      kc::embedding_backward(st(t), dtable, dout, ids, N, V, C, first, vocab, accumulate, scratch,
                             s());
    });
  }
  void layernorm_forward(DType t, void* out, void* mean, void* rstd, const void* inp,
                         const void* weight, const void* bias, int64_t N, int64_t C,
                         double eps) override {
    run("layernorm", [&] {
      // mean and rstd are f32 (stats_dtype) for f32 and bf16 rows alike.
      kc::layernorm_forward(st(t), out, P<float>(mean), P<float>(rstd), inp, weight, bias, N, C,
                            static_cast<float>(eps), s());
    });
  }
  void layernorm_backward(DType t, void* dinp, void* dweight, void* dbias, const void* dout,
                          const void* inp, const void* weight, const void* mean, const void* rstd,
                          int64_t N, int64_t C) override {
    run("layernorm_backward", [&] {
      CallScratch scratch(alloc_);
      kc::layernorm_backward(st(t), dinp, dweight, dbias, dout, inp, weight, P<float>(mean),
                             P<float>(rstd), N, C, scratch, s());
    });
  }
  void residual_layernorm_forward(DType t, void* residual, void* out, void* mean, void* rstd,
                                  const void* x, const void* delta, const void* weight,
                                  const void* bias, int64_t N, int64_t C, double eps) override {
    run("residual_layernorm", [&] {
      kc::residual_layernorm_forward(st(t), residual, out, P<float>(mean), P<float>(rstd), x, delta,
                                     weight, bias, N, C, static_cast<float>(eps), s());
    });
  }
  void residual_layernorm_backward(DType t, void* dinp, void* dweight, void* dbias,
                                   const void* dresidual, const void* dout, const void* residual,
                                   const void* weight, const void* mean, const void* rstd,
                                   int64_t N, int64_t C) override {
    run("residual_layernorm_backward", [&] {
      CallScratch scratch(alloc_);
      kc::residual_layernorm_backward(st(t), dinp, dweight, dbias, dresidual, dout, residual,
                                      weight, P<float>(mean), P<float>(rstd), N, C, scratch, s());
    });
  }
  void gelu_forward(DType t, void* out, const void* inp, int64_t n) override {
    run("gelu", [&] { kc::gelu_forward(st(t), out, inp, n, s()); });
  }
  void gelu_backward(DType t, void* dinp, const void* inp, const void* dout, int64_t n) override {
    run("gelu_backward", [&] { kc::gelu_backward(st(t), dinp, inp, dout, n, s()); });
  }
  void softmax_forward(DType t, void* out, const void* inp, int64_t rows, int64_t cols) override {
    run("softmax", [&] { kc::softmax_forward(st(t), out, inp, rows, cols, s()); });
  }
  void softmax_backward(DType t, void* dinp, const void* out, const void* dout, int64_t rows,
                        int64_t cols) override {
    run("softmax_backward", [&] { kc::softmax_backward(st(t), dinp, out, dout, rows, cols, s()); });
  }
  int64_t attention_saved_elements(DType t, int64_t B, int64_t T, int64_t C,
                                   int64_t NH) const override {
    const int64_t es = static_cast<int64_t>(dtype_size(t));
    const int64_t bytes = static_cast<int64_t>(kc::attention_saved_bytes(st(t), B, T, C, NH));
    return (bytes + es - 1) / es;
  }
  void attention_forward(DType t, void* out, void* att, const void* qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH) override {
    run("attention", [&] { kc::attention_forward(st(t), out, att, qkv, B, T, C, NH, s()); });
  }
  void attention_backward(DType t, void* dqkv, const void* dout, const void* qkv, const void* out,
                          const void* att, int64_t B, int64_t T, int64_t C, int64_t NH) override {
    run("attention_backward", [&] {
      CallScratch scratch(alloc_);
      kc::attention_backward(st(t), dqkv, dout, qkv, out, att, B, T, C, NH, scratch, s());
    });
  }
  void cross_entropy_forward(DType t, void* losses, void* lse, const void* logits,
                             const int32_t* targets, int64_t N, int64_t V) override {
    run("cross_entropy", [&] {
      // losses, lse and dlosses are f32 (stats_dtype) for f32 and bf16 logits alike.
      kc::cross_entropy_forward(st(t), P<float>(losses), P<float>(lse), logits, targets, N, V,
                                bad_slot(), s());
    });
  }
  void cross_entropy_backward(DType t, void* dlogits, const void* logits, const void* lse,
                              const int32_t* targets, const void* dlosses, int64_t N, int64_t V,
                              int64_t vocab_start) override {
    run("cross_entropy_backward", [&] {
      kc::cross_entropy_backward(st(t), dlogits, logits, P<float>(lse), targets, P<float>(dlosses),
                                 N, V, vocab_start, s());
    });
  }
  void cross_entropy_fused(DType t, void* logits, void* losses, void* dloss, const int32_t* targets,
                           int64_t N, int64_t V, int64_t vocab, double grad_scale) override {
    run("cross_entropy_fused", [&] {
      kc::cross_entropy_fused(st(t), logits, P<float>(losses), P<float>(dloss), targets, N, V,
                              vocab, grad_scale, bad_slot(), s());
    });
  }
  void cross_entropy_fused_rescale(DType t, void* x, const void* factor, int64_t n) override {
    run("cross_entropy_fused_rescale",
        [&] { kc::cross_entropy_fused_rescale(st(t), x, P<float>(factor), n, s()); });
  }
  void cross_entropy_shard_stats(DType t, void* stats, const void* logits, const int32_t* targets,
                                 int64_t N, int64_t V, int64_t vocab_start) override {
    run("cross_entropy_shard_stats", [&] {
      kc::cross_entropy_shard_stats(st(t), P<float>(stats), logits, targets, N, V, vocab_start,
                                    s());
    });
  }
  void cross_entropy_shard_combine(DType t, void* losses, void* lse, const void* stats,
                                   const int32_t* targets, int64_t N, int parts) override {
    run("cross_entropy_shard_combine", [&] {
      check_stats_dtype(t, "cross_entropy_shard_combine");
      kc::cross_entropy_shard_combine(P<float>(losses), P<float>(lse), P<float>(stats), targets, N,
                                      parts, s());
    });
  }
  void cross_entropy_mean(DType t, void* mean, void* inv_count, const void* losses,
                          const int32_t* targets, int64_t N) override {
    run("cross_entropy_mean", [&] {
      check_stats_dtype(t, "cross_entropy_mean");
      kc::cross_entropy_mean(P<float>(mean), P<float>(inv_count), P<float>(losses), targets, N,
                             s());
    });
  }
  // The entries that never touch data of dtype t still refuse what the others refuse: their
  // f32 statistics belong to f32 or bf16 logits.
  static void check_stats_dtype(DType t, const char* who) {
    if (t != DType::F32 && t != DType::BF16) {
      throw std::invalid_argument(
          str_cat(who, ": dtype ", dtype_name(t), " is not supported on CUDA (use f32 or bf16)"));
    }
  }
  void dropout_forward(DType t, void* out, void* mask, const void* inp, int64_t n, float p,
                       uint64_t seed, uint64_t offset) override {
    run("dropout", [&] { kc::dropout_forward(st(t), out, mask, inp, n, p, seed, offset, s()); });
  }
  void dropout_backward(DType t, void* dinp, const void* dout, const void* mask,
                        int64_t n) override {
    run("dropout_backward", [&] { kc::dropout_backward(st(t), dinp, dout, mask, n, s()); });
  }

  // --- Llama ops --------------------------------------------------------------------------
  void rms_norm_forward(DType t, void* out, void* rstd, const void* inp, const void* weight,
                        int64_t N, int64_t C, double eps) override {
    run("rms_norm", [&] {
      // rstd is f32 (stats_dtype) for f32 and bf16 rows alike.
      kc::rms_norm_forward(st(t), out, P<float>(rstd), inp, weight, N, C, static_cast<float>(eps),
                           s());
    });
  }
  void rms_norm_backward(DType t, void* dinp, void* dweight, const void* dout, const void* inp,
                         const void* weight, const void* rstd, int64_t N, int64_t C) override {
    run("rms_norm_backward", [&] {
      CallScratch scratch(alloc_);
      kc::rms_norm_backward(st(t), dinp, dweight, dout, inp, weight, P<float>(rstd), N, C, scratch,
                            s());
    });
  }
  void rope_forward(DType t, void* out, const void* inp, int64_t B, int64_t T, int64_t NH,
                    int64_t D, double theta, int64_t position_offset, bool inverse) override {
    run("rope", [&] {
      kc::rope_forward(st(t), out, inp, B, T, NH, D, theta, position_offset, inverse, s());
    });
  }
  void swiglu_forward(DType t, void* out, const void* gate, const void* up, int64_t n) override {
    run("swiglu", [&] { kc::swiglu_forward(st(t), out, gate, up, n, s()); });
  }
  void swiglu_backward(DType t, void* dgate, void* dup, const void* gate, const void* up,
                       const void* dout, int64_t n) override {
    run("swiglu_backward", [&] { kc::swiglu_backward(st(t), dgate, dup, gate, up, dout, n, s()); });
  }
  void gqa_pack_forward(DType t, void* qkv, const void* q, const void* k, const void* v, int64_t N,
                        int64_t H, int64_t Hkv, int64_t D) override {
    run("gqa_pack_qkv", [&] { kc::gqa_pack_forward(st(t), qkv, q, k, v, N, H, Hkv, D, s()); });
  }
  void gqa_pack_backward(DType t, void* dq, void* dk, void* dv, const void* dqkv, int64_t N,
                         int64_t H, int64_t Hkv, int64_t D) override {
    run("gqa_pack_qkv_backward",
        [&] { kc::gqa_pack_backward(st(t), dq, dk, dv, dqkv, N, H, Hkv, D, s()); });
  }

  // --- optimizers (kernels/cuda/optimizer.hpp: one launch over a table of tensors) ---------
  static kc::OptimizerEntry entry_of(const OptimizerTensor& t) {
    kc::OptimizerEntry e;
    e.param = t.param;
    e.grad = t.grad;
    e.state1 = t.state1;
    e.state2 = t.state2;
    e.n = t.n;
    e.weight_decay = t.weight_decay;
    e.first_step = t.first_step ? 1 : 0;
    return e;
  }
  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay,
                    int64_t step) override {
    const kc::OptimizerEntry e = entry_of({param, grad, m, v, n, weight_decay, false});
    run("adamw", [&] { kc::adamw_update_one(e, lr, beta1, beta2, eps, step, 1.0f, s()); });
  }
  void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
                  float dampening, float weight_decay, bool nesterov, bool first_step) override {
    const kc::OptimizerEntry e = entry_of({param, grad, buf, nullptr, n, weight_decay, first_step});
    run("sgd", [&] { kc::sgd_update_one(e, lr, momentum, dampening, nesterov, 1.0f, s()); });
  }
  size_t convert_table_bytes(int count) const override {
    return sizeof(kc::ConvertEntry) * static_cast<size_t>(std::max(count, 0));
  }
  int64_t convert_table_write(void* table, const ConvertTensor* tensors, int count) override {
    std::vector<kc::ConvertEntry> entries(static_cast<size_t>(std::max(count, 0)));
    for (int i = 0; i < count; ++i) {
      entries[static_cast<size_t>(i)].src = tensors[i].src;
      entries[static_cast<size_t>(i)].dst = tensors[i].dst;
      entries[static_cast<size_t>(i)].n = tensors[i].n;
    }
    const int64_t chunks = kc::convert_table_chunks(entries.data(), count);
    run("convert_table_write",
        [&] { kc::convert_table_upload(P<kc::ConvertEntry>(table), entries.data(), count, s()); });
    return chunks;
  }
  void convert_to_bf16_table(const void* table, int count, int64_t units) override {
    run("convert_to_bf16_table", [&] {
      kc::convert_f32_to_bf16_table(P<const kc::ConvertEntry>(table), count, units, s());
    });
  }
  size_t optimizer_table_bytes(int count) const override {
    return sizeof(kc::OptimizerEntry) * static_cast<size_t>(std::max(count, 0));
  }
  int64_t optimizer_table_write(void* table, const OptimizerTensor* tensors, int count) override {
    std::vector<kc::OptimizerEntry> entries(static_cast<size_t>(std::max(count, 0)));
    for (int i = 0; i < count; ++i) entries[static_cast<size_t>(i)] = entry_of(tensors[i]);
    const int64_t chunks = kc::optimizer_table_chunks(entries.data(), count);
    run("optimizer_table_write", [&] {
      kc::optimizer_table_upload(P<kc::OptimizerEntry>(table), entries.data(), count, s());
    });
    return chunks;
  }
  void adamw_update_table(const void* table, int count, int64_t units, float lr, float beta1,
                          float beta2, float eps, int64_t step, float grad_scale) override {
    run("adamw", [&] {
      kc::adamw_update_table(P<const kc::OptimizerEntry>(table), count, units, lr, beta1, beta2,
                             eps, step, grad_scale, s());
    });
  }
  void sgd_update_table(const void* table, int count, int64_t units, float lr, float momentum,
                        float dampening, bool nesterov, float grad_scale) override {
    run("sgd", [&] {
      kc::sgd_update_table(P<const kc::OptimizerEntry>(table), count, units, lr, momentum,
                           dampening, nesterov, grad_scale, s());
    });
  }

  // --- a training step without host synchronisation (kernels/cuda/train_step.hpp) ----------
  size_t step_scalars_bytes() const override { return sizeof(kc::StepScalars); }
  void step_scalars_init(void* scalars, int64_t step, int64_t adam_step) override {
    kc::StepScalars init;
    init.step = step;
    init.adam_step = adam_step;
    run("step_scalars_init",
        [&] { kc::step_scalars_init(P<kc::StepScalars>(scalars), init, s()); });
  }
  void sum_squares_multi_to(DType t, double* out, const void* const* xs, const int64_t* ns,
                            int count) override {
    run("sum_squares", [&] {
      CallScratch scratch(alloc_);
      kc::sum_squares_multi(st(t), xs, ns, count, out, scratch, s());
    });
  }
  void train_step_loss_sum(const float* micro_losses, int64_t m, double* loss_sum) override {
    run("train_step_loss_sum", [&] { kc::train_step_loss_sum(micro_losses, m, loss_sum, s()); });
  }
  void train_step_finish(void* scalars, const float* micro_losses, int64_t m,
                         const double* loss_sum, int64_t loss_ranks, const double* sum_squares,
                         float grad_clip, bool stop_on_nonfinite, int64_t fault_step,
                         const float* lr_table, int64_t lr_steps, double* window_loss,
                         double* window_norm, double* window_nonfinite, int64_t window) override {
    run("train_step_finish", [&] {
      kc::train_step_finish(
          P<kc::StepScalars>(scalars), micro_losses, m, loss_sum, loss_ranks, sum_squares,
          grad_clip, stop_on_nonfinite, fault_step, lr_table, lr_steps,
          kc::StepWindow{window_loss, window_norm, window_nonfinite, window}, s());
    });
  }
  void adamw_update_table_step(const void* table, int count, int64_t units, float beta1,
                               float beta2, float eps, const void* scalars) override {
    run("adamw", [&] {
      kc::adamw_update_table(P<const kc::OptimizerEntry>(table), count, units, beta1, beta2, eps,
                             P<const kc::StepScalars>(scalars), s());
    });
  }
  void sgd_update_table_step(const void* table, int count, int64_t units, float momentum,
                             float dampening, bool nesterov, const void* scalars) override {
    run("sgd", [&] {
      kc::sgd_update_table(P<const kc::OptimizerEntry>(table), count, units, momentum, dampening,
                           nesterov, P<const kc::StepScalars>(scalars), s());
    });
  }

  // Makes this backend's device current on the calling thread.
  void activate() const {
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != device_) {
      check(cudaSetDevice(device_), device_, "cudaSetDevice");
    }
  }

 private:
  static int activate_for_construction(int device) {
    cuda_check_device(device);
    check(cudaSetDevice(device), device, "cudaSetDevice");
    return device;
  }

  cudaStream_t s() const { return stream_.get(); }

  // Queues `g` through the plan cache; false (nothing queued) when cuBLASLt has no algorithm
  // with its epilogue for the shape.
  bool plan_gemm(DType t, const kc::GemmArgs& g) {
    return gemm_plans_.gemm(lt_.get(), st(t), g, workspace_.get(), workspace_.bytes(), s());
  }
  // `g` with its epilogue, or, where cuBLASLt has no fused algorithm, without it and then
  // `unfused()` (the epilogue's work as separate kernels).
  template <typename F>
  void gemm_fused_or(DType t, kc::GemmArgs g, F&& unfused) {
    if (plan_gemm(t, g)) return;
    g.epilogue = kc::GemmEpilogue::None;
    plan_gemm(t, g);
    unfused();
  }

  // One row-major product C (M, N) = op(A) op(B) over K, as ops' gemm2d lays it out.
  static kc::GemmArgs linear_args(const void* A, bool ta, const void* B, bool tb, void* C,
                                  int64_t M, int64_t N, int64_t K) {
    kc::GemmArgs g;
    g.transA = ta;
    g.transB = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = A;
    g.lda = ta ? M : K;
    g.B = B;
    g.ldb = tb ? K : N;
    g.C = C;
    g.ldc = N;
    return g;
  }
  int32_t* bad_slot() const { return static_cast<int32_t*>(result_.get()) + 2; }

  // Runs a launcher on this device; its exceptions become trident::Error naming the op and
  // device, except std::out_of_range, which ops translate themselves.
  template <typename F>
  void run(const char* op, F&& f) {
    activate();
    try {
      f();
    } catch (const Error&) {
      throw;
    } catch (const std::invalid_argument& e) {
      throw Error(str_cat(op, " on cuda:", device_, ": ", e.what()));
    } catch (const std::runtime_error& e) {
      throw Error(str_cat(op, " on cuda:", device_, ": ", e.what()));
    }
  }

  // Queues `f(out_dev, scratch)`, which writes a double into the device result slot, and
  // returns it after the stream has drained.
  template <typename F>
  double read_double(const char* op, F&& f) {
    std::lock_guard<std::mutex> lock(readback_mu_);
    double* dev = static_cast<double*>(result_.get());
    run(op, [&] {
      CallScratch scratch(alloc_);
      f(dev, scratch);
      check(cudaMemcpyAsync(host_.get(), dev, sizeof(double), cudaMemcpyDeviceToHost, s()), device_,
            op);
    });
    stream_.synchronize();
    return *static_cast<const double*>(host_.get());
  }

  int device_;
  int guard_;  // constructed first: checks the device and makes it current
  Stream stream_;
  LtHandle lt_;
  kc::GemmPlanCache gemm_plans_;  // descriptors and algorithm per matmul shape, built once
  DeviceBuffer workspace_;
  DeviceBuffer result_;  // [0, 8): a double; [8, 12): the bad-index slot
  PinnedBuffer host_;
  Allocator& alloc_;
  // The result and host slots are shared: one readback at a time (a communication thread may
  // ask for a norm while the main thread asks for a sum).
  std::mutex readback_mu_;
};

std::mutex g_mu;
std::vector<std::unique_ptr<CudaBackend>>& backends() {
  static std::vector<std::unique_ptr<CudaBackend>> all;
  return all;
}

CudaBackend& cuda_backend(int index) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto& all = backends();
  if (index >= 0 && static_cast<size_t>(index) < all.size() && all[index]) return *all[index];
  cuda_check_device(index);
  if (all.size() <= static_cast<size_t>(index)) all.resize(index + 1);
  all[index] = std::make_unique<CudaBackend>(index);
  return *all[index];
}

Backend& get_backend(int index) {
  return cuda_backend(index);
}
Allocator& get_allocator(int index) {
  return cuda_allocator(index);
}

// Host<->device and device<->device copies, ordered on the devices' compute streams; a copy
// to the host returns when the data has arrived.
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device.is_cuda() && src_device.is_cpu()) {
    CudaBackend& be = cuda_backend(dst_device.index);
    be.activate();
    // From pageable memory the runtime stages the source before returning, so the caller may
    // reuse it at once; the transfer itself is ordered after earlier work on the stream.
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, be.stream()), dst_device.index,
          "copy to device");
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    CudaBackend& be = cuda_backend(src_device.index);
    be.activate();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, be.stream()), src_device.index,
          "copy to host");
    be.synchronize();
  } else if (dst_device == src_device) {
    CudaBackend& be = cuda_backend(dst_device.index);
    be.activate();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be.stream()), dst_device.index,
          "device copy");
  } else {
    CudaBackend& from = cuda_backend(src_device.index);
    CudaBackend& to = cuda_backend(dst_device.index);
    to.synchronize();  // dst free of earlier work
    from.activate();
    check(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, from.stream()),
          src_device.index, "peer copy");
    from.synchronize();
  }
}

}  // namespace

void* cuda_compute_stream(int index) {
  return cuda_backend(index).stream();
}

void register_cuda_backend() {
  register_backend(DeviceType::CUDA, &get_backend);
  register_device_allocator(DeviceType::CUDA, &get_allocator);
  register_device_copy(&copy);
}

}  // namespace trident
#endif  // TRIDENT_WITH_CUDA
