// The op table: one Backend per device type, as ggml's backends. Ops in core/ops*.cpp check
// shapes, allocate outputs and call the backend of their inputs' device; model code never knows
// where a tensor lives. Buffers are contiguous unless strides are passed; pointers are device
// pointers of the backend's device. Backward entries overwrite their outputs.
#pragma once
#include <cstddef>
#include <cstdint>

#include "trident/core/device.hpp"
#include "trident/core/dtype.hpp"

namespace trident {

enum class BinaryOpKind : uint8_t { Add, Sub, Mul, Div };

// One tensor of a multi-tensor optimizer update (fp32). AdamW: state1 = exp_avg, state2 =
// exp_avg_sq. SGD: state1 = the momentum buffer (null when momentum is 0), state2 unused,
// first_step whether state1 is being initialised. Its own weight decay.
struct OptimizerTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* state1 = nullptr;
  float* state2 = nullptr;
  int64_t n = 0;
  float weight_decay = 0;
  bool first_step = false;
};

// One tensor of a multi-tensor f32 -> bf16 conversion (the step's working copies of the f32
// master weights, WorkingCopies).
struct ConvertTensor {
  const float* src = nullptr;
  void* dst = nullptr;  // bf16
  int64_t n = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Waits for queued work (a no-op on the CPU).
  virtual void synchronize() {}

  // --- memory and layout -------------------------------------------------------------
  virtual void fill(DType t, void* out, double value, int64_t n) = 0;
  virtual void copy_strided(DType t, void* out, const void* in, const int64_t* in_strides,
                            const int64_t* shape, int ndim) = 0;
  virtual void convert(DType to, void* out, DType from, const void* in, int64_t n) = 0;
  // dst[i] += (dst_t) src[i]: bitwise convert() into a temporary then axpy() with alpha 1 (src
  // rounded to dst_t, then one add in dst_t's arithmetic), in one pass. A to_dtype node's
  // backward adds a bf16 gradient straight into its f32 leaf's gradient this way.
  virtual void accumulate_converted(DType dst_t, void* dst, DType src_t, const void* src,
                                    int64_t n) = 0;

  // --- element-wise and reductions --------------------------------------------------
  virtual void binary_strided(BinaryOpKind op, DType t, void* out, const void* a,
                              const int64_t* a_strides, const void* b, const int64_t* b_strides,
                              const int64_t* shape, int ndim) = 0;
  virtual void reduce_sum_to(DType t, void* out, const void* in, const int64_t* shape,
                             const bool* reduce_dim, int ndim) = 0;
  virtual void scale(DType t, void* out, const void* in, double alpha, int64_t n) = 0;
  virtual void axpy(DType t, void* y, const void* x, double alpha, int64_t n) = 0;
  virtual double sum(DType t, const void* x, int64_t n) = 0;
  virtual double sum_squares(DType t, const void* x, int64_t n) = 0;
  // Sum of sum_squares over `count` buffers (the global gradient norm); one pass on a GPU.
  virtual double sum_squares_multi(DType t, const void* const* xs, const int64_t* ns, int count) {
    double s = 0;
    for (int i = 0; i < count; ++i) s += sum_squares(t, xs[i], ns[i]);
    return s;
  }
  virtual void add_bias(DType t, void* out, const void* in, const void* bias, int64_t rows,
                        int64_t cols) = 0;
  virtual void bias_backward(DType t, void* dbias, const void* dout, int64_t rows,
                             int64_t cols) = 0;

  // --- matrix multiply (row-major, see kernels/cpu/gemm.hpp) -------------------------
  virtual void gemm_batched(DType t, bool transA, bool transB, int64_t batch, int64_t M, int64_t N,
                            int64_t K, double alpha, const void* A, int64_t lda, int64_t strideA,
                            const void* B, int64_t ldb, int64_t strideB, double beta, void* C,
                            int64_t ldc, int64_t strideC) = 0;

  // A Linear layer over R rows: out (R, N) = x (R, K) w^T (+ bias (N) when not null), w (N, K).
  // This default is gemm_batched then add_bias; CUDA fuses the bias into the matmul.
  virtual void linear_forward(DType t, void* out, const void* x, const void* w, const void* bias,
                              int64_t R, int64_t N, int64_t K) {
    gemm_batched(t, false, true, 1, R, N, K, 1.0, x, K, 0, w, K, 0, 0.0, out, N, 0);
    if (bias != nullptr) add_bias(t, out, out, bias, R, N);
  }
  // Its parameter gradients from dy (R, N): dw (N, K) = dy^T x and, when dbias is not null,
  // dbias (N) = the column sums of dy (CUDA: one matmul with a bias-gradient epilogue).
  virtual void linear_weight_grad(DType t, void* dw, void* dbias, const void* dy, const void* x,
                                  int64_t R, int64_t N, int64_t K) {
    gemm_batched(t, true, false, 1, N, K, R, 1.0, dy, N, 0, x, K, 0, 0.0, dw, K, 0);
    if (dbias != nullptr) bias_backward(t, dbias, dy, R, N);
  }

  // Mixed precision: the f32 gradients of a Linear layer's f32 master weight and bias, from dy
  // (R, N) and x (R, K) in t (bf16, or f32): dw (N, K) = dy^T x (+ dw when accumulate_w) and,
  // when dbias is not null, dbias (N) = the column sums of dy (+ dbias when accumulate_bias),
  // products and sums in f32, each gradient rounded once to f32. CUDA: one cuBLASLt matmul with
  // bf16 A/B and f32 C/D, beta = 1 when accumulating, the bias sums in its BGRAD epilogue.
  virtual void linear_weight_grad_f32(DType t, float* dw, float* dbias, const void* dy,
                                      const void* x, int64_t R, int64_t N, int64_t K,
                                      bool accumulate_w, bool accumulate_bias);
  // The input gradient of an MLP's second Linear through the first one's GELU: dpre (R, K) =
  // (dy (R, N) w (N, K)) * gelu'(pre (R, K)), pre the GELU input linear_gelu_forward saved. This
  // default is gemm_batched then gelu_backward; CUDA: one matmul with the DGELU epilogue.
  virtual void linear_dgelu_backward(DType t, void* dpre, const void* dy, const void* w,
                                     const void* pre, int64_t R, int64_t N, int64_t K);

  // The first Linear of an MLP with its GELU: pre (R, N) = x w^T + bias, out = gelu(pre); pre is
  // kept for the backward pass. This default is linear_forward then gelu_forward (declared
  // below); CUDA writes both from one matmul (the GELU_AUX_BIAS epilogue).
  virtual void linear_gelu_forward(DType t, void* out, void* pre, const void* x, const void* w,
                                   const void* bias, int64_t R, int64_t N, int64_t K);

  // --- transformer ops (shapes as in kernels/cpu/*.hpp) -----------------------------
  // The table (V, C) holds rows [first, first + V) of a vocabulary of `vocab` ids (a
  // vocabulary-parallel shard; first 0 and vocab V for a whole table). Ids outside [0, vocab)
  // are errors; ids of other shards read zero rows and add no gradient.
  virtual void embedding_forward(DType t, void* out, const int32_t* ids, const void* table,
                                 int64_t N, int64_t V, int64_t C, int64_t first, int64_t vocab) = 0;
  // dtable = (accumulate ? dtable : 0) + the scatter of dout. The CPU kernel scatters in
  // position order and supports only accumulate false; the CUDA kernel sums each row's run
  // first and adds it to the existing row: the bits of a separate add of a fresh table.
  virtual void embedding_backward(DType t, void* dtable, const void* dout, const int32_t* ids,
                                  int64_t N, int64_t V, int64_t C, int64_t first, int64_t vocab,
                                  bool accumulate) = 0;
  // mean and rstd (N) are in stats_dtype(t): f32 for bf16 rows, so that backward rebuilds
  // the normalised values from unrounded statistics.
  virtual void layernorm_forward(DType t, void* out, void* mean, void* rstd, const void* inp,
                                 const void* weight, const void* bias, int64_t N, int64_t C,
                                 double eps) = 0;
  virtual void layernorm_backward(DType t, void* dinp, void* dweight, void* dbias, const void* dout,
                                  const void* inp, const void* weight, const void* mean,
                                  const void* rstd, int64_t N, int64_t C) = 0;
  // Fused residual + layer norm (llm.c's): residual = x + delta (N, C), rounded to t, then
  // out, mean and rstd as layernorm_forward of residual: the values of an add followed by
  // layernorm_forward, with one pass over the rows fewer.
  virtual void residual_layernorm_forward(DType t, void* residual, void* out, void* mean,
                                          void* rstd, const void* x, const void* delta,
                                          const void* weight, const void* bias, int64_t N,
                                          int64_t C, double eps) = 0;
  // layernorm_backward of the residual, with the gradient the residual stream already holds
  // added in the same write: dinp = dresidual + the layer norm's dinp. dresidual may be null
  // (nothing to add) or the same buffer as dinp (accumulated in place).
  virtual void residual_layernorm_backward(DType t, void* dinp, void* dweight, void* dbias,
                                           const void* dresidual, const void* dout,
                                           const void* residual, const void* weight,
                                           const void* mean, const void* rstd, int64_t N,
                                           int64_t C) = 0;
  virtual void gelu_forward(DType t, void* out, const void* inp, int64_t n) = 0;
  virtual void gelu_backward(DType t, void* dinp, const void* inp, const void* dout, int64_t n) = 0;
  virtual void softmax_forward(DType t, void* out, const void* inp, int64_t rows, int64_t cols) = 0;
  virtual void softmax_backward(DType t, void* dinp, const void* out, const void* dout,
                                int64_t rows, int64_t cols) = 0;
  // Elements of dtype t that attention_forward's `att` buffer needs: the CPU keeps the
  // (B, NH, T, T) probabilities, the CUDA flash kernel the row log-sum-exps (its backward
  // reads `out`, the forward's output as it was written, for rowsum(dout * out)).
  virtual int64_t attention_saved_elements(DType t, int64_t B, int64_t T, int64_t C,
                                           int64_t NH) const {
    (void)t;
    (void)C;
    return B * NH * T * T;
  }
  virtual void attention_forward(DType t, void* out, void* att, const void* qkv, int64_t B,
                                 int64_t T, int64_t C, int64_t NH) = 0;
  virtual void attention_backward(DType t, void* dqkv, const void* dout, const void* qkv,
                                  const void* out, const void* att, int64_t B, int64_t T, int64_t C,
                                  int64_t NH) = 0;
  // Cross entropy of logits (N, V) in dtype t; losses, lse, dlosses, mean and inv_count are
  // in stats_dtype(t) (f32 for bf16 logits, as PyTorch autocast and llm.c), dlogits in t.
  virtual void cross_entropy_forward(DType t, void* losses, void* lse, const void* logits,
                                     const int32_t* targets, int64_t N, int64_t V) = 0;
  // The logits hold classes [vocab_start, vocab_start + V) of each row (0 and the whole
  // vocabulary without tensor parallelism); a target in another slice adds no one-hot term.
  virtual void cross_entropy_backward(DType t, void* dlogits, const void* logits, const void* lse,
                                      const int32_t* targets, const void* dlosses, int64_t N,
                                      int64_t V, int64_t vocab_start) = 0;
  // The fused classifier (llm.c's): losses (N) of the rows of logits (N, V) over their first
  // `vocab` columns (the real vocabulary; columns [vocab, V) are padding: no probability mass),
  // from one online pass per row. When dloss is not null it also writes *dloss = grad_scale /
  // max(1, count of targets >= 0) (a device scalar) and overwrites the logits with the gradient
  // of grad_scale * mean(losses): (softmax - onehot) * *dloss, zero in padding columns and in
  // ignored rows; no dlogits buffer. losses and dloss are in stats_dtype(t). A target >= vocab
  // is an error reported as cross_entropy_forward reports it.
  virtual void cross_entropy_fused(DType t, void* logits, void* losses, void* dloss,
                                   const int32_t* targets, int64_t N, int64_t V, int64_t vocab,
                                   double grad_scale) = 0;
  // x (n, dtype t) *= *factor (a device scalar in stats_dtype(t)); touches nothing when *factor
  // is exactly 1, so a fused gradient made for the upstream gradient it gets costs no pass.
  virtual void cross_entropy_fused_rescale(DType t, void* x, const void* factor, int64_t n) = 0;
  // Vocabulary-parallel forward (Megatron-LM's loss over logits split by columns), in two steps
  // around an all-gather of `stats` over the slices: shard_stats writes stats (N, 4) in
  // stats_dtype(t) for this slice [vocab_start, vocab_start + V): the row's max m, sum of
  // exp(x - m), the target's logit and 1 where this slice holds the target (0 and 0
  // otherwise). shard_combine reads the (parts, N, 4) stats of every slice in order and writes
  // lse and losses (N) over the whole vocabulary (loss 0 for a target < 0, NaN for a target
  // no slice holds).
  virtual void cross_entropy_shard_stats(DType t, void* stats, const void* logits,
                                         const int32_t* targets, int64_t N, int64_t V,
                                         int64_t vocab_start) = 0;
  virtual void cross_entropy_shard_combine(DType t, void* losses, void* lse, const void* stats,
                                           const int32_t* targets, int64_t N, int parts) = 0;
  // One-element outputs on the device, nothing read back: *mean = the mean of losses over the
  // rows whose target is >= 0 (0 when there is none), *inv_count = 1 / max(1, their count),
  // the dloss of each row per unit gradient of the mean.
  virtual void cross_entropy_mean(DType t, void* mean, void* inv_count, const void* losses,
                                  const int32_t* targets, int64_t N) = 0;
  virtual void dropout_forward(DType t, void* out, void* mask, const void* inp, int64_t n, float p,
                               uint64_t seed, uint64_t offset) = 0;
  virtual void dropout_backward(DType t, void* dinp, const void* dout, const void* mask,
                                int64_t n) = 0;

  // --- Llama ops (shapes as in kernels/cpu/{rms_norm,rope,swiglu,gqa_pack}.hpp) -----
  // RMSNorm over rows (N, C); rstd (N) is in stats_dtype(t), as layer norm's statistics.
  virtual void rms_norm_forward(DType t, void* out, void* rstd, const void* inp, const void* weight,
                                int64_t N, int64_t C, double eps) = 0;
  virtual void rms_norm_backward(DType t, void* dinp, void* dweight, const void* dout,
                                 const void* inp, const void* weight, const void* rstd, int64_t N,
                                 int64_t C) = 0;
  // Rotary embeddings of (B, T, NH * D) rows at positions position_offset + t; `inverse`
  // rotates back (the backward pass). out may be inp.
  virtual void rope_forward(DType t, void* out, const void* inp, int64_t B, int64_t T, int64_t NH,
                            int64_t D, double theta, int64_t position_offset, bool inverse) = 0;
  virtual void swiglu_forward(DType t, void* out, const void* gate, const void* up, int64_t n) = 0;
  virtual void swiglu_backward(DType t, void* dgate, void* dup, const void* gate, const void* up,
                               const void* dout, int64_t n) = 0;
  // q (N, H * D), k and v (N, Hkv * D) -> qkv (N, 3 * H * D) with kv heads repeated; backward
  // sums the repeats.
  virtual void gqa_pack_forward(DType t, void* qkv, const void* q, const void* k, const void* v,
                                int64_t N, int64_t H, int64_t Hkv, int64_t D) = 0;
  virtual void gqa_pack_backward(DType t, void* dq, void* dk, void* dv, const void* dqkv, int64_t N,
                                 int64_t H, int64_t Hkv, int64_t D) = 0;

  // --- optimizers (fp32 master weights and state) -----------------------------------
  virtual void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            int64_t step) = 0;
  virtual void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr,
                          float momentum, float dampening, float weight_decay, bool nesterov,
                          bool first_step) = 0;
  // Multi-tensor updates: every tensor of a parameter set in one pass (one launch on a GPU).
  // The tensors are written once into a table in the parameters' device memory (a buffer of
  // optimizer_table_bytes(count) bytes the caller owns) by optimizer_table_write, which returns
  // the table's work units; every update reads that table, so a step's launch has the same
  // arguments at every step (a CUDA graph replays it). Rewrite the table whenever the set
  // changes (never while a CUDA graph is being captured). Each gradient is read as
  // grad * grad_scale in f32 (the clip factor folded into the update: bitwise what scaling the
  // gradients first gives).
  // Many f32 -> bf16 conversions in one pass (one launch on a GPU), through a table written as
  // the optimizer's is (convert_table_bytes(count) bytes the caller owns, in device memory;
  // rewritten when the set changes, never during a capture). Each element is bitwise what
  // convert() gives.
  virtual size_t convert_table_bytes(int count) const = 0;
  virtual int64_t convert_table_write(void* table, const ConvertTensor* tensors, int count) = 0;
  virtual void convert_to_bf16_table(const void* table, int count, int64_t units) = 0;
  virtual size_t optimizer_table_bytes(int count) const = 0;
  virtual int64_t optimizer_table_write(void* table, const OptimizerTensor* tensors, int count) = 0;
  virtual void adamw_update_table(const void* table, int count, int64_t units, float lr,
                                  float beta1, float beta2, float eps, int64_t step,
                                  float grad_scale) = 0;
  virtual void sgd_update_table(const void* table, int count, int64_t units, float lr,
                                float momentum, float dampening, bool nesterov,
                                float grad_scale) = 0;

  // --- a training step without host synchronisation (the CUDA backend; the others throw) ---
  // A step's numbers (learning rate, AdamW step count, clip factor, skip decision) live in a
  // device block of step_scalars_bytes() bytes that train_step_finish() updates once per step,
  // and the optimizer entries below read when they run (kernels/cuda/train_step.hpp has the
  // arithmetic): nothing changing from step to step is a kernel argument, so the host never
  // waits and a step can be replayed as a CUDA graph.
  virtual size_t step_scalars_bytes() const;
  // Queues `scalars` = {steps done: step, optimizer updates applied: adam_step, no skip}.
  virtual void step_scalars_init(void* scalars, int64_t step, int64_t adam_step);
  // *out (a device double) = the sum of squares of the xs, queued (sum_squares_multi's pass).
  virtual void sum_squares_multi_to(DType t, double* out, const void* const* xs, const int64_t* ns,
                                    int count);
  // *loss_sum (a device double) = the sum of micro_losses (m, f32) as train_step_finish sums
  // them, queued: the value an all-reduce over data-parallel ranks then adds up.
  virtual void train_step_loss_sum(const float* micro_losses, int64_t m, double* loss_sum);
  // Queues the step's bookkeeping: loss = sum of micro_losses (m, f32), or *loss_sum / loss_ranks
  // when loss_sum is given (the all-reduced train_step_loss_sum of loss_ranks ranks),
  // norm = sqrt(*sum_squares),
  // the clip factor, skip, lr = lr_table[step] (lr_steps f32), the AdamW count; loss, norm and a
  // non-finite flag (1 or 0) go to slot step % window of window_loss, window_norm and
  // window_nonfinite (f64). fault_step (1-based) makes that step's loss NaN (tests).
  virtual void train_step_finish(void* scalars, const float* micro_losses, int64_t m,
                                 const double* loss_sum, int64_t loss_ranks,
                                 const double* sum_squares, float grad_clip, bool stop_on_nonfinite,
                                 int64_t fault_step, const float* lr_table, int64_t lr_steps,
                                 double* window_loss, double* window_norm, double* window_nonfinite,
                                 int64_t window);
  // adamw/sgd_update_table with lr, the step count, the clip factor (as grad_scale) and the skip
  // read from `scalars`.
  virtual void adamw_update_table_step(const void* table, int count, int64_t units, float beta1,
                                       float beta2, float eps, const void* scalars);
  virtual void sgd_update_table_step(const void* table, int count, int64_t units, float momentum,
                                     float dampening, bool nesterov, const void* scalars);
};

// The dtype of the per-row statistics that layer norm and cross entropy save for backward
// (mean, rstd, lse) and of the losses: never narrower than f32.
constexpr DType stats_dtype(DType t) {
  return t == DType::F64 ? DType::F64 : DType::F32;
}

// The backend serving `device`; throws trident::Error when the build or machine lacks it.
Backend& backend_for(Device device);
// Used by the CUDA backend to install itself; `get` receives the device index and throws
// trident::Error when that device cannot be used.
void register_backend(DeviceType type, Backend& (*get)(int index));
// Copies bytes between devices; registered by the CUDA backend for anything touching a GPU.
using CopyFn = void (*)(void* dst, Device dst_device, const void* src, Device src_device,
                        size_t bytes);
void register_device_copy(CopyFn fn);

}  // namespace trident
