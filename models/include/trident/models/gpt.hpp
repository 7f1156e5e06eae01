// GPT-2 (learned positions, pre-LN blocks, tied token embedding and output head), built from
// core's nn layers. Sizes and parameter names: gpt_config.hpp.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/nn/layers.hpp"
#include "trident/models/gpt_config.hpp"

namespace trident::models {

class Block : public nn::UnaryModule {
 public:
  Block(const GPTConfig& cfg, Generator& gen, const nn::InitOptions& init);
  Tensor forward(const Tensor& x) override;  // x + attn(ln1(x)), then + mlp(ln2(.))
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::CausalSelfAttention> attn;
  std::shared_ptr<nn::MLP> mlp;
};

class GPT : public nn::Module {
 public:
  // Initialised as GPT-2: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)),
  // zero biases, unit LayerNorm weights; deterministic given `seed`.
  GPT(const GPTConfig& cfg, uint64_t seed, Device device = Device::cpu());

  // ids (B, T) i32 -> logits (B, T, V).
  Tensor forward(const Tensor& ids);
  // Mean cross entropy of forward(ids) against targets (B, T) i32.
  Tensor loss(const Tensor& ids, const Tensor& targets);
  // Appends `n` tokens sampled with temperature and top-k (0 = all) to the prompt.
  std::vector<int32_t> generate(std::vector<int32_t> prompt, int64_t n, double temperature,
                                int64_t top_k, Generator& gen);

  const GPTConfig& config() const { return cfg_; }
  // Copies values into parameters by name; every parameter must be present with its shape.
  void load_named(const std::map<std::string, std::vector<float>>& values);

  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::Sequential> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;

 private:
  GPTConfig cfg_;
};

}  // namespace trident::models
