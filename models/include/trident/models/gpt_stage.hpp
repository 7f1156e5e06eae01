// GPTStage: a GPT built for one pipeline stage (its blocks, plus the embeddings on the first
// stage and ln_f and the tied head on the last), seen through the schedules' PipelineStage
// interface (parallel/pipeline.hpp). Activations between stages are hidden states (b, T, C).
#pragma once
#include "trident/models/gpt.hpp"
#include "trident/parallel/pipeline.hpp"

namespace trident::models {

class GPTStage final : public PipelineStage {
 public:
  // `model` must outlive the stage.
  explicit GPTStage(GPT& model) : model_(model) {}

  Tensor forward(const Tensor& input) override { return model_.forward_stage(input); }
  Tensor loss(const Tensor& output, const Tensor& targets) override {
    return model_.head_loss(output, targets);
  }
  bool is_first() const override { return model_.is_first_stage(); }
  bool is_last() const override { return model_.is_last_stage(); }
  Shape activation_shape(int64_t batch, int64_t seq_len) const override {
    return {batch, seq_len, model_.config().n_embd};
  }
  Device device() const override;
  // Sums wte.weight's gradient over the first and last stage (the embedding's share and the
  // output head's), so both hold the single-model gradient of the tied weight. Collective
  // over the context's embedding group; nothing when pp == 1 or on a middle stage. With a
  // DataParallelReducer (wte.weight in a solo bucket) call its all_reduce_param_grad("wte.weight",
  // *embedding_group()) after finish() instead: under ZeRO this rank owns only a shard.
  void finish_gradients() override;

  GPT& model() const { return model_; }

 private:
  GPT& model_;
};

}  // namespace trident::models
