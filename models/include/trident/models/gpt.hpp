// GPT-2 (learned positions, pre-LN blocks, tied token embedding and output head), written once
// and made 3D-parallel by its construction arguments: given a ParallelContext, a rank builds
// only its pipeline stage's blocks (named by their global index) with its tensor-parallel
// shards (heads, MLP columns, vocabulary rows). Sizes and parameter names: gpt_config.hpp.
//
// Mixed precision (set_compute_dtype(DType::BF16)), as Megatron-LM with bf16 and torch.autocast:
// parameters stay f32 (the master weights the optimizer and the data-parallel reducer see);
// activations run in bf16. The embeddings are looked up in f32 and their sum is cast to bf16;
// every other layer casts its parameters to its input's dtype where it uses them (once per
// forward; the cast's backward returns each gradient to its f32 parameter as f32, so
// micro-batch gradients accumulate in f32). Layer-norm statistics, softmax and attention
// accumulate in f32 inside the kernels, and the loss is computed on f32 logits. Hidden states
// cross pipeline stages as f32 (exact for bf16 values).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/nn/layers.hpp"
#include "trident/models/gpt_config.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/parallel/tensor_parallel.hpp"

namespace trident::models {

// The residual stream between blocks, kept as llm.c keeps it: the stream so far and the output of
// the last branch (the MLP's), not yet added. The next block adds it inside its ln1 and the last
// stage inside ln_f (ops::residual_layer_norm: the add and the layer norm in one kernel, forward
// and backward), so no residual add runs on its own. pending is undefined at a stage's start.
struct ResidualStream {
  Tensor residual;  // (B, T, C)
  Tensor pending;   // (B, T, C), or undefined
  // residual + pending: the hidden state a pipeline stage sends on.
  Tensor sum() const;
};

class Block : public nn::UnaryModule {
 public:
  Block(const GPTConfig& cfg, uint64_t seed, Communicator& tp);
  // In the stream's dtype (parameters cast to it): x = residual + pending, h = x + attn(ln1(x));
  // returns {h, mlp(ln2(h))}, the block's output x' = h + mlp(ln2(h)) left unsummed.
  ResidualStream forward(const ResidualStream& in);
  // x' for x alone (forward({x, {}}).sum()).
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<tp::ParallelCausalSelfAttention> attn;
  std::shared_ptr<tp::ParallelMLP> mlp;
};

class GPT : public nn::Module {
 public:
  // Initialised as GPT-2 (N(0, 0.02); residual projections N(0, 0.02/sqrt(2 n_layer)); zero
  // biases; unit LayerNorm weights). Each parameter's values come from its own stream, seeded
  // by (seed, name), and a shard is cut from the full tensor, so every layout starts from the
  // same weights. `ctx` (not owned, may be null for one process) must outlive the model.
  GPT(const GPTConfig& cfg, uint64_t seed, Device device = Device::cpu(),
      const ParallelContext* ctx = nullptr);

  // One pipeline stage: the first takes ids (B, T) i32, the others the previous stage's
  // hidden states (B, T, C); the last returns ln_f's output, the others their blocks' output.
  Tensor forward_stage(const Tensor& input);
  // Last stage: mean cross entropy of the (vocabulary-parallel) tied head on `hidden`, whose
  // backward will receive grad_scale (the fused classifier writes its gradient for it).
  Tensor head_loss(const Tensor& hidden, const Tensor& targets, double grad_scale = 1.0);

  // Single-stage, single-shard model: ids (B, T) -> logits (B, T, Vp) in the compute dtype, Vp =
  // config().table_rows(); with a padded vocabulary only the first vocab_size columns mean
  // anything.
  Tensor forward(const Tensor& ids);
  // Single-stage model (any tp): mean cross entropy against targets (B, T) i32.
  Tensor loss(const Tensor& ids, const Tensor& targets);

  // The dtype activations run in: f32 (default) or bf16 (mixed precision, see the top).
  void set_compute_dtype(DType t);
  DType compute_dtype() const { return compute_dtype_; }

  const GPTConfig& config() const { return cfg_; }
  const ParallelContext& parallel() const { return *ctx_; }
  bool is_first_stage() const { return ctx_->topology().is_first_stage(); }
  bool is_last_stage() const { return ctx_->topology().is_last_stage(); }
  int64_t first_layer() const { return first_layer_; }
  int64_t num_local_layers() const { return num_layers_; }
  // Re-initialises every parameter from `seed` (see the constructor).
  void init_weights(uint64_t seed);
  // Copies full (unsharded) values into parameters by name, keeping this rank's shard; every
  // parameter must be present with its full shape.
  void load_named(const std::map<std::string, std::vector<float>>& values);

  std::shared_ptr<tp::VocabParallelEmbedding> wte;  // first and last stage
  std::shared_ptr<nn::Embedding> wpe;               // first stage
  std::shared_ptr<nn::Dropout> drop;                // first stage
  std::shared_ptr<nn::Sequential> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;  // last stage

 private:
  GPTConfig cfg_;
  std::unique_ptr<ParallelContext> own_ctx_;
  const ParallelContext* ctx_;
  int64_t first_layer_ = 0, num_layers_ = 0;
  DType compute_dtype_ = DType::F32;
  Tensor padding_mask_;  // tp > 1 with a padded vocabulary: 0 or -inf per column of the slice
  // Positions 0..T-1 on the input's device, made once: a forward uploads nothing from the host
  // (a CUDA graph cannot capture a copy from pageable memory).
  Tensor pos_ids_;
};

// The initial standard deviation GPT-2 uses for the parameter `name` (0 for biases, which start
// at zero; LayerNorm weights start at one and report 0 too).
double gpt_init_std(const std::string& name, const GPTConfig& cfg);

}  // namespace trident::models
