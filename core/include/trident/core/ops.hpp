// Differentiable tensor operations. Each checks its inputs (throwing trident::Error with the
// shapes involved), runs the backend of its inputs' device and records its backward.
#pragma once
#include <cstdint>

#include "trident/core/tensor.hpp"

namespace trident::ops {

// --- element-wise with numpy broadcasting ------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor mul_scalar(const Tensor& a, double s);
Tensor add_scalar(const Tensor& a, double s);
// In place, no autograd: a += b (same shape). Used for gradient accumulation.
void add_(Tensor& a, const Tensor& b);
// Sums `t` down to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& t, const Shape& shape);

// --- reductions ---------------------------------------------------------------------
Tensor sum(const Tensor& a);   // all elements -> scalar (shape {})
Tensor mean(const Tensor& a);  // all elements -> scalar

// --- matrix multiply ------------------------------------------------------------------
// (M,K)@(K,N); (B,M,K)@(B,K,N); (...,M,K)@(K,N) folds the leading dimensions.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) W^T + b with W (out, in) and b (out) or undefined: torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// --- neural-network ops ------------------------------------------------------------
// ids (any shape, i32) -> (*ids.shape, C) rows of table (V, C). With `vocab` >= 0 the table
// holds rows [first, first + V) of a vocabulary of `vocab` ids (a vocabulary-parallel shard):
// ids must lie in [0, vocab), and another shard's id gives a zero row and no gradient.
Tensor embedding(const Tensor& ids, const Tensor& table, int64_t first = 0, int64_t vocab = -1);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// The residual stream's add and the next layer norm in one op (ops_fused.cpp): returns
// {residual = x + delta, layer_norm(residual, weight, bias, eps)}, x and delta of one shape, with
// the values and gradients of those two ops. One kernel writes both outputs; backward adds the
// layer norm's input gradient to the one the residual already has in the same kernel.
struct ResidualLayerNorm {
  Tensor residual;
  Tensor normed;
};
ResidualLayerNorm residual_layer_norm(const Tensor& x, const Tensor& delta, const Tensor& weight,
                                      const Tensor& bias, double eps = 1e-5);
Tensor gelu(const Tensor& x);  // tanh approximation
// gelu(linear(x, weight, bias)) in one op (one cuBLASLt call on CUDA), same values and gradients.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias);
// linear, linear_gelu and mlp_gelu take either parameters of x's dtype or, for a bf16 x, f32
// (master) weights and biases: the forward multiplies their bf16 copies, the backward writes
// their gradients in f32 straight from the matmuls (added in place into a leaf's existing
// gradient), with no cast node and no bf16 gradient.
// The transformer MLP as one op (ops_mlp.cpp): linear(gelu(linear(x, w_fc, b_fc)), w_proj,
// b_proj) with b_proj optional, same values and gradients; the GELU's backward runs inside the
// proj's input-gradient matmul (cuBLASLt's DGELU epilogue on CUDA).
Tensor mlp_gelu(const Tensor& x, const Tensor& w_fc, const Tensor& b_fc, const Tensor& w_proj,
                const Tensor& b_proj = Tensor());
Tensor softmax(const Tensor& x);  // over the last dimension
// qkv (B, T, 3C) -> (B, T, C), causal, n_head heads.
Tensor causal_self_attention(const Tensor& qkv, int64_t n_head);
// Mean over non-ignored rows of the cross entropy of logits (N, V) (or (B,T,V)) against
// targets (N) (or (B,T)) i32; targets < 0 are ignored. Returns a scalar, f32 for bf16 logits;
// lse and losses are kept in f32 too, and nothing is read back to the host but the check of
// the targets.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets);
// cross_entropy's mean loss through the fused classifier, over the first `vocab` columns of
// logits (..., Vp) (vocab <= Vp; columns [vocab, Vp) are padding: no probability mass, zero
// gradient, as in a GPT-2 head padded from 50257 to 50304 rows). When it records gradients it
// CONSUMES the logits: their storage is overwritten by their gradient during the forward (one
// pass, no dlogits buffer), computed for an upstream gradient of `grad_scale` (backward rescales
// on the device when the real one differs; no pass when it matches). So pass logits nothing
// else reads, such as the LM head matmul's output (its backward needs x and W only); a leaf is
// refused. Without gradients (evaluation, NoGradGuard) the logits are left as they are.
Tensor cross_entropy_fused(const Tensor& logits, const Tensor& targets, int64_t vocab,
                           double grad_scale = 1.0);
// The mean loss and its backward from per-row `losses` and `lse` (N) already computed over the
// whole vocabulary (in stats_dtype of the logits), for contiguous logits (..., V) holding
// classes [vocab_start, vocab_start + V) and targets (N) on their device: cross_entropy's second
// half, shared with the vocabulary-parallel loss.
Tensor cross_entropy_from_lse(const Tensor& logits, const Tensor& targets, const Tensor& losses,
                              const Tensor& lse, int64_t vocab_start);
// Inverted dropout; identity when !training or p == 0. (seed, offset) pick the random stream.
Tensor dropout(const Tensor& x, float p, bool training, uint64_t seed, uint64_t offset);

// --- Llama ops (core/src/ops_llama.cpp); f32, bf16 (statistics and arithmetic in f32), f64 on
// the CPU --------------------------------------------------------------------------------
// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * weight; weight (C).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);
// Rotary position embeddings, Hugging Face's rotate_half convention (no q/k permutation on
// import): x (B, T, n_head * D), D even; for position t = position_offset + t_index and
// i < D/2, angle = t * theta^(-2i/D): out[i] = x[i] cos - x[i + D/2] sin,
// out[i + D/2] = x[i + D/2] cos + x[i] sin. Backward is the inverse rotation. The angle is
// rounded to f32 as Hugging Face computes it (kernels/cpu/rope.hpp).
Tensor rope(const Tensor& x, int64_t n_head, double theta, int64_t position_offset = 0);
// SwiGLU's gate: silu(gate) * up, elementwise, same shapes.
Tensor swiglu(const Tensor& gate, const Tensor& up);
// Grouped-query attention input: q (B, T, H * D), k and v (B, T, Hkv * D), H % Hkv == 0 ->
// the packed (B, T, 3 * H * D) tensor causal_self_attention(qkv, H) takes, with each kv head
// repeated for its H / Hkv query heads (query head h uses kv head h / (H / Hkv)). Backward
// sums the repeated heads' gradients.
Tensor gqa_pack_qkv(const Tensor& q, const Tensor& k, const Tensor& v, int64_t n_head,
                    int64_t n_kv_head);

}  // namespace trident::ops

namespace trident {
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return ops::add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return ops::sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return ops::mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return ops::div(a, b);
}
inline Tensor operator*(const Tensor& a, double s) {
  return ops::mul_scalar(a, s);
}
inline Tensor operator*(double s, const Tensor& a) {
  return ops::mul_scalar(a, s);
}
}  // namespace trident
