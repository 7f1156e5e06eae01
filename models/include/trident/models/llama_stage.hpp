// LlamaStage: a Llama built for one pipeline stage (its decoder layers, plus the token
// embedding on the first stage and the final RMSNorm and the untied head on the last), seen
// through the library trainer's TrainableModel interface (trident/train/trainable_model.hpp) as
// a ModelStage (model_stage.hpp). Activations between stages are hidden states (b, T, C) f32.
// Nothing is tied: the embedding and the head are separate parameters, so tied_parameters() is
// empty at every pp.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trident/models/llama.hpp"
#include "trident/models/model_stage.hpp"
#include "trident/train/model_registry.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::models {

class LlamaStage final : public ModelStage<Llama> {
 public:
  using ModelStage<Llama>::ModelStage;

  // {vocab_size, block_size, n_layer, n_head, n_kv_head, n_embd, ffn_hidden, rope_theta,
  // norm_eps}
  nlohmann::json config() const override;
  // The config's keys as strings and format "trident-llama": what --load reads back.
  std::vector<std::pair<std::string, std::string>> weights_metadata() const override;
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
