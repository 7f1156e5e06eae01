// TrainableModel: what a model provides so that the library trainer (trident/train/trainer.hpp)
// can train it under any dp x tp x pp layout, on the CPU or a GPU. The trainer never names a
// model or a parameter: everything it needs about the model comes through this interface.
//
// A model implements it once per rank, for the share that rank builds: its pipeline stage
// (its layers, named by their global index) with its tensor-parallel shards. It is the
// schedules' PipelineStage (parallel/pipeline.hpp) plus:
//   module()           this rank's parameters, named and with shard specs (nn::Module's
//                      named_parameters() / named_shard_specs()), and train()/eval()
//   tied_parameters()  parameters that several pipeline stages hold as copies of one
//                      parameter (GPT's token embedding on the first stage and its tied
//                      output head on the last)
//   config()           the sizes that define the model (checkpoints store them, resume checks)
//   flops_per_token()  for MFU
// The stage's forward runs in the model's compute dtype (mixed precision is the model's
// business: parameters stay f32 master weights, activations cross stages as f32).
//
// A one-process model is the 1 x 1 x 1 case: is_first() and is_last() are both true, and the
// trainer's step is loss(forward(ids), targets).
//
// Example (a model written against the public API; see README "Training a model"):
//
//   class MyModel final : public trident::train::TrainableModel {
//    public:
//     MyModel(const trident::ParallelContext& ctx) : net_(...) {}
//     Tensor forward(const Tensor& input) override { ... }      // ids or hidden states
//     Tensor loss(const Tensor& out, const Tensor& y, double) override { ... }
//     bool is_first() const override { ... }
//     bool is_last() const override { ... }
//     Shape activation_shape(int64_t b, int64_t T) const override { return {b, T, C}; }
//     Device device() const override { ... }
//     nn::Module& module() override { return net_; }
//     nlohmann::json config() const override { return {{"width", C}}; }
//   };
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/nn/module.hpp"
#include "trident/parallel/pipeline.hpp"

namespace trident::train {

// Copies of one parameter held by several pipeline stages (a token embedding tied to the
// output head): each copy is trained with the gradient of the single-model parameter, the sum
// of the copies' gradients. Listed only where the copies sit on different stages (pp > 1).
struct TiedParameter {
  // (pipeline stage, the parameter's name in that stage's module()), one entry per stage
  // holding a copy, stages ascending. Today's trainer combines copies on the first and the last
  // stage (ParallelContext::embedding_group()); other stage sets are refused with an Error.
  std::vector<std::pair<int, std::string>> copies;
};

class TrainableModel : public PipelineStage {
 public:
  // PipelineStage (parallel/pipeline.hpp), which the trainer uses for every layout:
  //   Tensor forward(const Tensor& input)   first stage: ids (b, T) i32; others: the received
  //                                         activation (activation_shape, f32)
  //   Tensor loss(const Tensor& output, const Tensor& targets, double grad_scale)
  //                                         last stage: scalar mean loss, whose backward will
  //                                         receive grad_scale (1/m; a loss may ignore it)
  //   bool is_first() const, bool is_last() const
  //   Shape activation_shape(int64_t batch, int64_t seq_len) const
  //   Device device() const

  // This rank's share of the model: its parameters by stable dotted name (shard specs say
  // how tensor parallelism cut them; unsharded parameters are replicated over tp), and the
  // train()/eval() switch (dropout).
  virtual nn::Module& module() = 0;
  const nn::Module& module() const { return const_cast<TrainableModel*>(this)->module(); }

  // The parameters several stages hold (see TiedParameter); none by default.
  virtual std::vector<TiedParameter> tied_parameters() const { return {}; }

  // The sizes that define the model, as a JSON object: written into checkpoints
  // ("model_config") and metrics.jsonl. The same on every rank.
  virtual nlohmann::json config() const = 0;
  // Throws trident::Error (naming the checkpoint `path` and the flag to change) when a
  // checkpoint written with `saved` (its config()) cannot be loaded into this model. The
  // default refuses any key whose value differs, except "dropout".
  virtual void check_checkpoint_config(const nlohmann::json& saved, const std::string& path) const;
  // One line for the log: "GPT: 2 layers, 4 heads, width 128, ...".
  virtual std::string describe() const = 0;
  // Training FLOPs per token of the whole model (6N + attention, as PaLM's appendix) for a
  // sequence of `seq_len`; 0 when unknown (no MFU is reported then).
  virtual double flops_per_token(int64_t seq_len) const {
    (void)seq_len;
    return 0.0;
  }
  // String metadata stored with the final weights (model.safetensors), enough for the model's
  // factory to rebuild it from the file (--load); none by default.
  virtual std::vector<std::pair<std::string, std::string>> weights_metadata() const { return {}; }
  // The whole model on one rank (tp 1, pp 1): the logits (b, T, V') of ids (b, T), V' >= the
  // vocabulary (columns past it are padding, never sampled). What sampling (trident/train/
  // sampling.hpp) needs; the default throws trident::Error naming describe().
  virtual Tensor logits(const Tensor& ids);
};

}  // namespace trident::train
