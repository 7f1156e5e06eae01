#include "trident/models/llama.hpp"

#include "model_parts.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/rng.hpp"
#include "trident/core/working_copies.hpp"

namespace trident::models {

namespace {
// x W^T for a column-parallel layer whose input is already in the tensor-parallel region
// (tp::copy_to_tp_region applied once for several projections of the same x); W as the layer's
// own forward passes it (the f32 master itself under bf16 mixed precision).
Tensor project(const Tensor& x_in_region, const tp::ColumnParallelLinear& layer) {
  return ops::linear(x_in_region, tp::linear_param(layer.weight, x_in_region));
}
bool is_norm_weight(const std::string& name) {
  const std::string suffix = "norm.weight";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

RMSNorm::RMSNorm(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", Tensor::ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) {
  return ops::rms_norm(x, WorkingCopies::to(weight, x.dtype()), eps);
}

LlamaAttention::LlamaAttention(const LlamaConfig& cfg, Communicator& tpc)
    : rope_theta(cfg.rope_theta), tp_(tpc) {
  const int tp = tpc.size();
  cfg.validate_tp(tp);
  const int64_t C = cfg.n_embd, D = cfg.head_size();
  local_heads = cfg.n_head / tp;
  local_kv_heads = cfg.n_kv_head / tp;
  q_proj = register_module(
      "q_proj", std::make_shared<tp::ColumnParallelLinear>(C, cfg.n_head * D, false, tpc));
  k_proj = register_module(
      "k_proj", std::make_shared<tp::ColumnParallelLinear>(C, cfg.n_kv_head * D, false, tpc));
  v_proj = register_module(
      "v_proj", std::make_shared<tp::ColumnParallelLinear>(C, cfg.n_kv_head * D, false, tpc));
  o_proj = register_module("o_proj",
                           std::make_shared<tp::RowParallelLinear>(cfg.n_head * D, C, false, tpc));
}

Tensor LlamaAttention::forward(const Tensor& x) {
  // Local heads only: q (B, T, H/tp D), k and v (B, T, KV/tp D); RoPE at positions 0..T-1.
  const Tensor xr = tp::copy_to_tp_region(x, tp_);
  const Tensor q = ops::rope(project(xr, *q_proj), local_heads, rope_theta, 0);
  const Tensor k = ops::rope(project(xr, *k_proj), local_kv_heads, rope_theta, 0);
  const Tensor v = project(xr, *v_proj);
  // Each kv head repeated for its H/KV q heads, packed q|k|v for the causal attention.
  const Tensor qkv = ops::gqa_pack_qkv(q, k, v, local_heads, local_kv_heads);
  return o_proj->forward(ops::causal_self_attention(qkv, local_heads));
}

LlamaMLP::LlamaMLP(const LlamaConfig& cfg, Communicator& tpc) : tp_(tpc) {
  const int64_t C = cfg.n_embd, F = cfg.ffn_hidden;
  gate_proj =
      register_module("gate_proj", std::make_shared<tp::ColumnParallelLinear>(C, F, false, tpc));
  up_proj =
      register_module("up_proj", std::make_shared<tp::ColumnParallelLinear>(C, F, false, tpc));
  down_proj =
      register_module("down_proj", std::make_shared<tp::RowParallelLinear>(F, C, false, tpc));
}

Tensor LlamaMLP::forward(const Tensor& x) {
  const Tensor xr = tp::copy_to_tp_region(x, tp_);
  return down_proj->forward(ops::swiglu(project(xr, *gate_proj), project(xr, *up_proj)));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& cfg, Communicator& tpc) {
  input_layernorm =
      register_module("input_layernorm", std::make_shared<RMSNorm>(cfg.n_embd, cfg.norm_eps));
  self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(cfg, tpc));
  post_attention_layernorm = register_module("post_attention_layernorm",
                                             std::make_shared<RMSNorm>(cfg.n_embd, cfg.norm_eps));
  mlp = register_module("mlp", std::make_shared<LlamaMLP>(cfg, tpc));
}

Tensor LlamaDecoderLayer::forward(const Tensor& x) {
  const Tensor h = x + self_attn->forward(input_layernorm->forward(x));
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

Llama::Llama(const LlamaConfig& cfg, uint64_t seed, Device device, const ParallelContext* ctx)
    : cfg_(cfg) {
  cfg_.validate();
  ctx_ = detail::context_or_own(ctx, own_ctx_);
  const detail::StageLayers stage = detail::stage_layers(ctx_->topology(), cfg_.n_layer);
  cfg_.validate_tp(ctx_->layout().tp);
  num_layers_ = stage.count;
  first_layer_ = stage.first;
  Communicator& tpc = ctx_->tp();

  if (is_first_stage()) {
    embed_tokens = register_module("embed_tokens", std::make_shared<tp::VocabParallelEmbedding>(
                                                       cfg_.vocab_size, cfg_.n_embd, tpc));
  }
  layers = register_module("layers", std::make_shared<nn::Sequential>(first_layer_));
  for (int64_t i = 0; i < num_layers_; ++i) {
    layers->push_back(std::make_shared<LlamaDecoderLayer>(cfg_, tpc));
  }
  if (is_last_stage()) {
    norm = register_module("norm", std::make_shared<RMSNorm>(cfg_.n_embd, cfg_.norm_eps));
    lm_head = register_module("lm_head", std::make_shared<tp::ColumnParallelLinear>(
                                             cfg_.n_embd, cfg_.vocab_size, false, tpc));
  }
  init_weights(seed);
  to(device);
}

void Llama::set_compute_dtype(DType t) {
  TRIDENT_CHECK(t == DType::F32 || t == DType::BF16, "Llama: compute dtype ", dtype_name(t),
                " is not supported (use f32, or bf16 for mixed precision)");
  compute_dtype_ = t;
}

void Llama::init_weights(uint64_t seed) {
  detail::set_parameters_from_full(*this, [&](const std::string& name, Tensor& full) {
    if (is_norm_weight(name)) {
      full.fill_(1.0);
    } else {
      Generator gen(counter_hash(seed, detail::name_hash(name)));
      gen.normal_(full, 0.0, 0.02);
    }
  });
}

Tensor Llama::forward_stage(const Tensor& input) {
  Tensor x;
  if (is_first_stage()) {
    TRIDENT_CHECK(input.dim() == 2 && input.dtype() == DType::I32,
                  "Llama: token ids must be (B, T) i32, got ", input.shape_str(), " ",
                  dtype_name(input.dtype()));
    TRIDENT_CHECK(input.size(1) <= cfg_.block_size, "Llama: sequence length ", input.size(1),
                  " is longer than the model's context of ", cfg_.block_size);
    // Looked up in f32 (the embedding gradient scatter-adds in f32), then cast once.
    x = embed_tokens->forward(input).to(compute_dtype_);
  } else {
    TRIDENT_CHECK(input.dim() == 3 && input.size(2) == cfg_.n_embd, "Llama stage ",
                  ctx_->topology().pp_rank(), ": expected hidden states (B, T, ", cfg_.n_embd,
                  "), got ", input.shape_str());
    x = input.to(compute_dtype_);
  }
  x = layers->forward(x);
  return is_last_stage() ? norm->forward(x) : x.to(DType::F32);
}

Tensor Llama::head_loss(const Tensor& hidden, const Tensor& targets, double grad_scale) {
  TRIDENT_CHECK(is_last_stage(), "head_loss on a stage that is not the last");
  TRIDENT_CHECK(
      targets.dim() == 2 && targets.size(0) == hidden.size(0) && targets.size(1) == hidden.size(1),
      "Llama: targets ", targets.shape_str(), " do not match hidden states ", hidden.shape_str());
  Communicator& tpc = ctx_->tp();
  // This rank's vocabulary columns (B, T, V/tp), in the hidden states' dtype.
  const Tensor logits_local = lm_head->forward(hidden);
  // One rank: the fused classifier (it overwrites the logits with their gradient; nothing else
  // reads them; written for the upstream gradient grad_scale). Several: the two-pass loss over
  // the vocabulary slices.
  if (tpc.size() == 1)
    return ops::cross_entropy_fused(logits_local, targets, cfg_.vocab_size, grad_scale);
  const int64_t vocab_start = tpc.rank() * (cfg_.vocab_size / tpc.size());
  return tp::vocab_parallel_cross_entropy(logits_local, targets, vocab_start, tpc);
}

Tensor Llama::forward(const Tensor& ids) {
  TRIDENT_CHECK(ctx_->layout().pp == 1 && ctx_->layout().tp == 1,
                "Llama::forward returns full logits: it needs the whole model on one rank");
  return lm_head->forward(forward_stage(ids));
}

Tensor Llama::loss(const Tensor& ids, const Tensor& targets) {
  TRIDENT_CHECK(ctx_->layout().pp == 1,
                "Llama::loss runs the whole model: use a pipeline schedule when --pp > 1");
  TRIDENT_CHECK(targets.shape() == ids.shape(), "Llama: targets ", targets.shape_str(),
                " do not match inputs ", ids.shape_str());
  return head_loss(forward_stage(ids), targets);
}

void Llama::load_named(const std::map<std::string, std::vector<float>>& values) {
  detail::load_parameters(*this, values);
}

}  // namespace trident::models
