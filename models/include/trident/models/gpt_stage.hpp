// GPTStage: a GPT built for one pipeline stage (its blocks, plus the embeddings on the first
// stage and ln_f and the tied head on the last), seen through the library trainer's
// TrainableModel interface (trident/train/trainable_model.hpp), which is the schedules'
// PipelineStage plus parameters, ties and sizes; what every model's stage does the same way is
// ModelStage's (model_stage.hpp). Activations between stages are hidden states (b, T, C) f32.
//
// Tie: wte.weight is the token embedding on the first stage and the output head on the last;
// with pp > 1 both hold a copy, declared by tied_parameters() as {(0, "wte.weight"),
// (pp - 1, "wte.weight")}, and the trainer (train::reduce_tied_gradients) sums the copies'
// gradients.
#pragma once
#include <memory>

#include "trident/models/gpt.hpp"
#include "trident/models/model_stage.hpp"
#include "trident/train/model_registry.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::models {

class GPTStage final : public ModelStage<GPT> {
 public:
  using ModelStage<GPT>::ModelStage;

  std::vector<train::TiedParameter> tied_parameters() const override;
  // {vocab_size, padded_vocab_size, block_size, n_layer, n_head, n_embd, dropout}
  nlohmann::json config() const override;
  void check_checkpoint_config(const nlohmann::json& saved, const std::string& path) const override;
  // The sizes (vocab_size, padded_vocab_size, block_size, n_layer, n_head, n_embd) and
  // format "trident-gpt": what --load reads back.
  std::vector<std::pair<std::string, std::string>> weights_metadata() const override;
};

// GPT's factory for the model registry: the preset args.name (GPTConfig::preset_names()) with
// the size overrides, or the sizes of args.hf's config.json / args.load's metadata, whose
// weights the model then starts from. GPT-2's vocabulary of 50257 is padded to 50304 rows on a
// GPU unless args.padded_vocab says otherwise.
std::unique_ptr<train::ModelBuilder> make_gpt_builder(const train::ModelArgs& args);
// The resolved configuration make_gpt_builder uses (also for trident-train's eval and sample
// modes, which need the GPT itself).
GPTConfig resolve_gpt_config(const train::ModelArgs& args);
// A GPT of `cfg` on args.device with the weights args asks for (args.hf, args.load or fresh
// from args.seed) in args.compute_dtype. `ctx` (null: one process) must outlive it.
std::unique_ptr<GPT> build_gpt(const GPTConfig& cfg, const train::ModelArgs& args,
                               const ParallelContext* ctx);
// Registers the GPT presets ("tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl").
void register_gpt_models(train::ModelRegistry& registry);

}  // namespace trident::models
