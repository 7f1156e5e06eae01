// ModelStage<Model>: what every model's stage adapter shares (GPTStage, LlamaStage): a model built
// for one pipeline stage, seen through the library trainer's TrainableModel interface
// (trident/train/trainable_model.hpp). Activations between stages are hidden states (b, T, C)
// f32. Model provides forward_stage, forward (full logits), head_loss, is_first_stage,
// is_last_stage, parameters() and config() with n_embd, describe() and flops_per_token(T).
// A model's stage adds what is its own: ties, config(), weights_metadata().
#pragma once
#include <memory>
#include <string>
#include <utility>

#include "trident/train/trainable_model.hpp"

namespace trident::models {

template <class Model>
class ModelStage : public train::TrainableModel {
 public:
  // `model` must outlive the stage.
  explicit ModelStage(Model& model) : model_(model) {}
  // The stage owns its model.
  explicit ModelStage(std::unique_ptr<Model> model) : owned_(std::move(model)), model_(*owned_) {}

  Tensor forward(const Tensor& input) override { return model_.forward_stage(input); }
  Tensor logits(const Tensor& ids) override { return model_.forward(ids); }
  Tensor loss(const Tensor& output, const Tensor& targets, double grad_scale) override {
    return model_.head_loss(output, targets, grad_scale);
  }
  bool is_first() const override { return model_.is_first_stage(); }
  bool is_last() const override { return model_.is_last_stage(); }
  Shape activation_shape(int64_t batch, int64_t seq_len) const override {
    return {batch, seq_len, model_.config().n_embd};
  }
  // Every stage holds at least one layer, so at least one parameter.
  Device device() const override { return model_.parameters().front().device(); }

  nn::Module& module() override { return model_; }
  std::string describe() const override { return model_.config().describe(); }
  double flops_per_token(int64_t seq_len) const override {
    return model_.config().flops_per_token(seq_len);
  }

  Model& model() const { return model_; }

 protected:
  std::unique_ptr<Model> owned_;
  Model& model_;
};

}  // namespace trident::models
