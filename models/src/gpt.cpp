#include "trident/models/gpt.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "model_parts.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/rng.hpp"
#include "trident/core/working_copies.hpp"

namespace trident::models {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// {x, ln(x)} for x = s.residual + s.pending, the add fused into the layer norm when there is a
// pending branch, in the stream's dtype (ln's f32 parameters cast to it: a no-op in f32).
ops::ResidualLayerNorm add_and_norm(const ResidualStream& s, const nn::LayerNorm& ln) {
  const Tensor& x = s.residual;
  const Tensor w = WorkingCopies::to(ln.weight, x.dtype());
  const Tensor b = WorkingCopies::to(ln.bias, x.dtype());
  if (s.pending.defined()) return ops::residual_layer_norm(x, s.pending, w, b, ln.eps);
  return {x, ops::layer_norm(x, w, b, ln.eps)};
}
}  // namespace

Tensor ResidualStream::sum() const {
  return pending.defined() ? residual + pending : residual;
}

double gpt_init_std(const std::string& name, const GPTConfig& cfg) {
  if (ends_with(name, ".bias") || name.find(".ln") != std::string::npos ||
      name.rfind("ln_f.", 0) == 0) {
    return 0.0;
  }
  if (ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.proj.weight")) {
    return 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  }
  return 0.02;
}

Block::Block(const GPTConfig& cfg, uint64_t seed, Communicator& tp) {
  ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(cfg.n_embd, cfg.ln_eps));
  attn = register_module("attn", std::make_shared<tp::ParallelCausalSelfAttention>(
                                     cfg.n_embd, cfg.n_head, cfg.dropout, seed ^ 0xA77Eull, tp));
  ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(cfg.n_embd, cfg.ln_eps));
  mlp = register_module(
      "mlp", std::make_shared<tp::ParallelMLP>(cfg.n_embd, cfg.dropout, seed ^ 0x3A1Full, tp));
}

ResidualStream Block::forward(const ResidualStream& in) {
  const ops::ResidualLayerNorm x = add_and_norm(in, *ln1);
  const ops::ResidualLayerNorm h = add_and_norm({x.residual, attn->forward(x.normed)}, *ln2);
  return {h.residual, mlp->forward(h.normed)};
}

Tensor Block::forward(const Tensor& x) {
  return forward(ResidualStream{x, {}}).sum();
}

GPT::GPT(const GPTConfig& cfg, uint64_t seed, Device device, const ParallelContext* ctx)
    : cfg_(cfg) {
  cfg_.validate();
  ctx_ = detail::context_or_own(ctx, own_ctx_);
  const detail::StageLayers stage = detail::stage_layers(ctx_->topology(), cfg_.n_layer);
  num_layers_ = stage.count;
  first_layer_ = stage.first;
  Communicator& tpc = ctx_->tp();

  if (is_first_stage() || is_last_stage()) {
    wte = register_module(
        "wte", std::make_shared<tp::VocabParallelEmbedding>(cfg_.table_rows(), cfg_.n_embd, tpc));
  }
  if (is_first_stage()) {
    Generator unused(seed);
    wpe = register_module("wpe",
                          std::make_shared<nn::Embedding>(cfg_.block_size, cfg_.n_embd, unused));
    drop = register_module("drop", std::make_shared<nn::Dropout>(cfg_.dropout, seed ^ 0xE3B0ull));
  }
  blocks = register_module("blocks", std::make_shared<nn::Sequential>(first_layer_));
  for (int64_t i = 0; i < num_layers_; ++i) {
    blocks->push_back(
        std::make_shared<Block>(cfg_, seed + 7919 * static_cast<uint64_t>(first_layer_ + i), tpc));
  }
  if (is_last_stage()) {
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(cfg_.n_embd, cfg_.ln_eps));
  }
  init_weights(seed);
  to(device);
}

void GPT::set_compute_dtype(DType t) {
  TRIDENT_CHECK(t == DType::F32 || t == DType::BF16, "GPT: compute dtype ", dtype_name(t),
                " is not supported (use f32, or bf16 for mixed precision; f16 would need loss "
                "scaling)");
  compute_dtype_ = t;
}

void GPT::init_weights(uint64_t seed) {
  detail::set_parameters_from_full(*this, [&](const std::string& name, Tensor& full) {
    const double std = gpt_init_std(name, cfg_);
    const bool is_ln_weight =
        (name.find(".ln") != std::string::npos || name.rfind("ln_f.", 0) == 0) &&
        ends_with(name, ".weight");
    if (std > 0) {
      Generator gen(counter_hash(seed, detail::name_hash(name)));
      gen.normal_(full, 0.0, std);
    } else {
      full.fill_(is_ln_weight ? 1.0 : 0.0);
    }
  });
}

Tensor GPT::forward_stage(const Tensor& input) {
  Tensor x;
  if (is_first_stage()) {
    TRIDENT_CHECK(input.dim() == 2 && input.dtype() == DType::I32,
                  "GPT: token ids must be (B, T) i32, got ", input.shape_str(), " ",
                  dtype_name(input.dtype()));
    const int64_t T = input.size(1);
    TRIDENT_CHECK(T <= cfg_.block_size, "GPT: sequence length ", T,
                  " is longer than the model's context of ", cfg_.block_size);
    if (!pos_ids_.defined() || pos_ids_.size(0) != T || pos_ids_.device() != input.device()) {
      std::vector<int32_t> pos(static_cast<size_t>(T));
      std::iota(pos.begin(), pos.end(), 0);
      pos_ids_ = Tensor::from_vector(pos, {T}, input.device());
    }
    const Tensor& pos_ids = pos_ids_;
    // Looked up in f32 (the embedding gradients scatter-add in f32), then cast once.
    x = drop->forward((wte->forward(input) + wpe->forward(pos_ids)).to(compute_dtype_));
  } else {
    TRIDENT_CHECK(input.dim() == 3 && input.size(2) == cfg_.n_embd, "GPT stage ",
                  ctx_->topology().pp_rank(), ": expected hidden states (B, T, ", cfg_.n_embd,
                  "), got ", input.shape_str());
    x = input.to(compute_dtype_);
  }
  ResidualStream s{x, {}};
  for (size_t i = 0; i < blocks->size(); ++i) s = static_cast<Block&>(*(*blocks)[i]).forward(s);
  // The last block's output add runs inside ln_f; between stages hidden states travel summed, as
  // f32 (the pipeline's interface).
  return is_last_stage() ? add_and_norm(s, *ln_f).normed : s.sum().to(DType::F32);
}

Tensor GPT::head_loss(const Tensor& hidden, const Tensor& targets, double grad_scale) {
  TRIDENT_CHECK(is_last_stage(), "head_loss on a stage that is not the last");
  TRIDENT_CHECK(
      targets.dim() == 2 && targets.size(0) == hidden.size(0) && targets.size(1) == hidden.size(1),
      "GPT: targets ", targets.shape_str(), " do not match hidden states ", hidden.shape_str());
  Communicator& tpc = ctx_->tp();
  // The tied head in the hidden states' dtype; the loss itself is computed in f32.
  const Tensor logits_local =
      ops::linear(tp::copy_to_tp_region(hidden, tpc), tp::linear_param(wte->weight, hidden));
  // One rank: the fused classifier, which writes the gradient over the logits (nothing else
  // reads them: the head's backward needs the hidden states and wte) and masks the padding;
  // written for the upstream gradient grad_scale, its backward then has nothing to rescale.
  if (tpc.size() == 1)
    return ops::cross_entropy_fused(logits_local, targets, cfg_.vocab_size, grad_scale);
  // Vocabulary-parallel: the two-pass loss over the slices; padding columns (in the last
  // slices) get a -inf logit, so no probability mass and a zero gradient.
  if (wte->vocab_end() <= cfg_.vocab_size) {
    return tp::vocab_parallel_cross_entropy(logits_local, targets, wte->vocab_start(), tpc);
  }
  const int64_t width = wte->vocab_end() - wte->vocab_start();
  if (!padding_mask_.defined() || padding_mask_.dtype() != logits_local.dtype() ||
      padding_mask_.device() != logits_local.device()) {
    std::vector<float> mask(static_cast<size_t>(width), 0.0f);
    for (int64_t j = std::max<int64_t>(cfg_.vocab_size - wte->vocab_start(), 0); j < width; ++j)
      mask[static_cast<size_t>(j)] = -std::numeric_limits<float>::infinity();
    padding_mask_ =
        Tensor::from_vector(mask, {width}, logits_local.device()).to(logits_local.dtype());
  }
  return tp::vocab_parallel_cross_entropy(logits_local + padding_mask_, targets, wte->vocab_start(),
                                          tpc);
}

Tensor GPT::forward(const Tensor& ids) {
  TRIDENT_CHECK(ctx_->layout().pp == 1 && ctx_->layout().tp == 1,
                "GPT::forward returns full logits: it needs the whole model on one rank");
  const Tensor hidden = forward_stage(ids);
  return ops::linear(hidden, tp::linear_param(wte->weight, hidden));  // tied head
}

Tensor GPT::loss(const Tensor& ids, const Tensor& targets) {
  TRIDENT_CHECK(ctx_->layout().pp == 1,
                "GPT::loss runs the whole model: use a pipeline "
                "schedule when --pp > 1");
  TRIDENT_CHECK(targets.shape() == ids.shape(), "GPT: targets ", targets.shape_str(),
                " do not match inputs ", ids.shape_str());
  return head_loss(forward_stage(ids), targets);
}

void GPT::load_named(const std::map<std::string, std::vector<float>>& values) {
  const int64_t rows = cfg_.table_rows(), C = cfg_.n_embd;
  detail::load_parameters(
      *this, values,
      [&](const std::string& name, const std::vector<float>& v, const Shape& full_shape) {
        if (name != "wte.weight" || rows == cfg_.vocab_size ||
            static_cast<int64_t>(v.size()) != cfg_.vocab_size * C)
          return Tensor();
        // Unpadded weights (a 50257-row GPT-2) into a padded table: zero
        // padding rows.
        std::vector<float> padded(v);
        padded.resize(static_cast<size_t>(rows * C), 0.0f);
        return Tensor::from_vector(padded, full_shape);
      });
}

}  // namespace trident::models
