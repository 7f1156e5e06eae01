// LlamaStage: a Llama built for one pipeline stage (its decoder layers, plus the token
// embedding on the first stage and the final RMSNorm and the untied head on the last), seen
// through the library trainer's TrainableModel interface (trident/train/trainable_model.hpp).
// Activations between stages are hidden states (b, T, C) f32. Nothing is tied: the embedding
// and the head are separate parameters, so tied_parameters() is empty at every pp.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trident/models/llama.hpp"
#include "trident/train/model_registry.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::models {

class LlamaStage final : public train::TrainableModel {
 public:
  // `model` must outlive the stage.
  explicit LlamaStage(Llama& model) : model_(model) {}
  // The stage owns its model.
  explicit LlamaStage(std::unique_ptr<Llama> model) : owned_(std::move(model)), model_(*owned_) {}

  Tensor forward(const Tensor& input) override { return model_.forward_stage(input); }
  Tensor logits(const Tensor& ids) override { return model_.forward(ids); }
  Tensor loss(const Tensor& output, const Tensor& targets) override {
    return model_.head_loss(output, targets);
  }
  bool is_first() const override { return model_.is_first_stage(); }
  bool is_last() const override { return model_.is_last_stage(); }
  Shape activation_shape(int64_t batch, int64_t seq_len) const override {
    return {batch, seq_len, model_.config().n_embd};
  }
  // Every stage holds at least one decoder layer, so at least one parameter.
  Device device() const override { return model_.parameters().front().device(); }

  nn::Module& module() override { return model_; }
  // {vocab_size, block_size, n_layer, n_head, n_kv_head, n_embd, ffn_hidden, rope_theta,
  // norm_eps}
  nlohmann::json config() const override;
  std::string describe() const override { return model_.config().describe(); }
  double flops_per_token(int64_t seq_len) const override {
    return model_.config().flops_per_token(seq_len);
  }
  // The config's keys as strings and format "trident-llama": what --load reads back.
  std::vector<std::pair<std::string, std::string>> weights_metadata() const override;

  Llama& model() const { return model_; }

 private:
  std::unique_ptr<Llama> owned_;
  Llama& model_;
};

// The configuration of a Llama job: the preset args.name (LlamaConfig::preset_names()) with the
// size overrides (--width also sets the MLP width to 8/3 of it rounded up to a multiple of 16),
// the sizes in args.load's metadata, or those of args.hf's config.json (a Hugging Face
// LlamaForCausalLM directory, hf_llama.hpp), whose weights the model then starts from.
LlamaConfig resolve_llama_config(const train::ModelArgs& args);
// Llama's factory for the model registry.
std::unique_ptr<train::ModelBuilder> make_llama_builder(const train::ModelArgs& args);
// Registers the Llama presets ("llama-tiny", "llama-small", "llama3-8b", "llama3-70b").
void register_llama_models(train::ModelRegistry& registry);

}  // namespace trident::models
