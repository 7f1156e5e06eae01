// GPTStage: a GPT built for one pipeline stage (its blocks, plus the embeddings on the first
// stage and ln_f and the tied head on the last), seen through the library trainer's
// TrainableModel interface (trident/train/trainable_model.hpp), which is the schedules'
// PipelineStage plus parameters, ties and sizes. Activations between stages are hidden states
// (b, T, C) f32.
//
// Tie: wte.weight is the token embedding on the first stage and the output head on the last;
// with pp > 1 both hold a copy, declared by tied_parameters() as {(0, "wte.weight"),
// (pp - 1, "wte.weight")}, and the trainer (train::reduce_tied_gradients) sums the copies'
// gradients.
#pragma once
#include <memory>

#include "trident/models/gpt.hpp"
#include "trident/train/model_registry.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::models {

class GPTStage final : public train::TrainableModel {
 public:
  // `model` must outlive the stage.
  explicit GPTStage(GPT& model) : model_(model) {}
  // The stage owns its model.
  explicit GPTStage(std::unique_ptr<GPT> model) : owned_(std::move(model)), model_(*owned_) {}

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
  Device device() const override;

  nn::Module& module() override { return model_; }
  std::vector<train::TiedParameter> tied_parameters() const override;
  // {vocab_size, padded_vocab_size, block_size, n_layer, n_head, n_embd, dropout}
  nlohmann::json config() const override;
  void check_checkpoint_config(const nlohmann::json& saved, const std::string& path) const override;
  std::string describe() const override { return model_.config().describe(); }
  double flops_per_token(int64_t seq_len) const override {
    return model_.config().flops_per_token(seq_len);
  }
  // The sizes (vocab_size, padded_vocab_size, block_size, n_layer, n_head, n_embd) and
  // format "trident-gpt": what --load reads back.
  std::vector<std::pair<std::string, std::string>> weights_metadata() const override;

  GPT& model() const { return model_; }

 private:
  std::unique_ptr<GPT> owned_;
  GPT& model_;
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
