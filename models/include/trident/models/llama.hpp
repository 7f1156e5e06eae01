// Llama 3-style decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP, untied
// output head, no biases), written once against the public API and made 3D-parallel by its
// construction arguments, as the GPT: given a ParallelContext, a rank builds only its pipeline
// stage's layers (named by their global index) with its tensor-parallel shards.
//
// Tensor parallelism (Megatron-LM's scheme, tp ranks r = 0..tp-1; the column-parallel
// projections that read the same input share one copy_to_tp_region, so backward all-reduces the
// input gradient once for q|k|v and once for gate|up, as Megatron's fused projections do):
//   q_proj, k_proj, v_proj  column-parallel: rank r holds q heads [r H/tp, (r+1) H/tp) and kv
//                           heads [r KV/tp, (r+1) KV/tp) (so KV % tp == 0); its q heads' kv
//                           heads are exactly its own, the attention runs on local heads.
//   o_proj                  row-parallel (the partial outputs are summed over tp).
//   gate_proj, up_proj      column-parallel (F/tp columns each); SwiGLU on the local slice.
//   down_proj               row-parallel.
//   embed_tokens            vocabulary-parallel rows (first stage).
//   lm_head                 vocabulary-parallel rows (last stage); the loss is the
//                           vocabulary-parallel cross entropy, no rank holds the full logits.
// Nothing is tied: the embedding and the head are separate parameters on the first and last
// stage.
//
// Activations run in the compute dtype (f32, or bf16 with f32 master weights, as the GPT);
// hidden states cross pipeline stages as f32 (B, T, C). Sizes and names: llama_config.hpp.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/nn/layers.hpp"
#include "trident/models/llama_config.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/parallel/tensor_parallel.hpp"

namespace trident::models {

// y = weight * x / sqrt(mean(x^2) over the last dimension + eps); weight (dim) starts at one
// and is cast to x's dtype.
class RMSNorm : public nn::UnaryModule {
 public:
  RMSNorm(int64_t dim, double eps);
  Tensor forward(const Tensor& x) override;
  Tensor weight;
  double eps;
};

// Grouped-query causal self-attention with rotary positions; heads split over tp.
class LlamaAttention : public nn::UnaryModule {
 public:
  LlamaAttention(const LlamaConfig& cfg, Communicator& tp);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C)
  std::shared_ptr<tp::ColumnParallelLinear> q_proj, k_proj, v_proj;
  std::shared_ptr<tp::RowParallelLinear> o_proj;
  int64_t local_heads, local_kv_heads;
  double rope_theta;

 private:
  Communicator& tp_;
};

// down(silu(gate(x)) * up(x)); gate/up column-parallel, down row-parallel.
class LlamaMLP : public nn::UnaryModule {
 public:
  LlamaMLP(const LlamaConfig& cfg, Communicator& tp);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<tp::ColumnParallelLinear> gate_proj, up_proj;
  std::shared_ptr<tp::RowParallelLinear> down_proj;

 private:
  Communicator& tp_;
};

class LlamaDecoderLayer : public nn::UnaryModule {
 public:
  LlamaDecoderLayer(const LlamaConfig& cfg, Communicator& tp);
  // x + attn(norm1(x)), then + mlp(norm2(.)).
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<RMSNorm> input_layernorm;
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<RMSNorm> post_attention_layernorm;
  std::shared_ptr<LlamaMLP> mlp;
};

class Llama : public nn::Module {
 public:
  // Every matrix N(0, 0.02) (Hugging Face's initializer_range), RMSNorm weights one. Each
  // parameter's values come from its own stream, seeded by (seed, name), and a shard is cut
  // from the full tensor, so every layout starts from the same weights. `ctx` (not owned, may
  // be null for one process) must outlive the model. Throws trident::Error when the layout does
  // not divide the model (layers by pp; heads, kv heads, MLP width, vocabulary by tp).
  Llama(const LlamaConfig& cfg, uint64_t seed, Device device = Device::cpu(),
        const ParallelContext* ctx = nullptr);

  // One pipeline stage: the first takes ids (B, T) i32, the others the previous stage's hidden
  // states (B, T, C) f32; the last returns the final RMSNorm's output, the others their layers'
  // output as f32.
  Tensor forward_stage(const Tensor& input);
  // Last stage: mean cross entropy of the (vocabulary-parallel) head on `hidden`, whose backward
  // will receive grad_scale (the fused classifier writes its gradient for it).
  Tensor head_loss(const Tensor& hidden, const Tensor& targets, double grad_scale = 1.0);
  // Single-stage, single-shard model: ids (B, T) -> logits (B, T, V).
  Tensor forward(const Tensor& ids);
  // Single-stage model (any tp): mean cross entropy against targets (B, T) i32.
  Tensor loss(const Tensor& ids, const Tensor& targets);

  void set_compute_dtype(DType t);  // f32 (default) or bf16
  DType compute_dtype() const { return compute_dtype_; }

  const LlamaConfig& config() const { return cfg_; }
  const ParallelContext& parallel() const { return *ctx_; }
  bool is_first_stage() const { return ctx_->topology().is_first_stage(); }
  bool is_last_stage() const { return ctx_->topology().is_last_stage(); }
  int64_t first_layer() const { return first_layer_; }
  int64_t num_local_layers() const { return num_layers_; }
  void init_weights(uint64_t seed);
  // Copies full (unsharded) values into parameters by name, keeping this rank's shard; every
  // parameter of this rank must be present with its full shape.
  void load_named(const std::map<std::string, std::vector<float>>& values);

  std::shared_ptr<tp::VocabParallelEmbedding> embed_tokens;  // first stage
  std::shared_ptr<nn::Sequential> layers;
  std::shared_ptr<RMSNorm> norm;                      // last stage
  std::shared_ptr<tp::ColumnParallelLinear> lm_head;  // last stage, vocabulary rows split

 private:
  LlamaConfig cfg_;
  std::unique_ptr<ParallelContext> own_ctx_;
  const ParallelContext* ctx_;
  int64_t first_layer_ = 0, num_layers_ = 0;
  DType compute_dtype_ = DType::F32;
};

}  // namespace trident::models
