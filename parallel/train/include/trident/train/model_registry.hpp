// ModelRegistry: model families by name, so that trident-train's --model picks any model that
// implements TrainableModel, and a new family is added by registering a factory; the trainer
// and the CLI never name a model.
//
// Two steps, because a job checks its inputs before it builds anything collective:
//   1. registry.resolve(args) calls the factory registered under args.name. It returns a
//      ModelBuilder: the model's sizes, resolved from the arguments (and from the files they
//      name, e.g. --load's metadata), checked against the layout without building anything.
//   2. builder->build(ctx) builds this rank's share (collective over nothing; the ParallelContext
//      must outlive the model).
//
// Registering a family (models/ does it for its own: trident/models/builtin_models.hpp):
//
//   void register_my_models(trident::train::ModelRegistry& r) {
//     r.add("my-small", "my model, 2 layers", [](const trident::train::ModelArgs& a) {
//       return std::make_unique<MyBuilder>(MyConfig::small(), a);
//     });
//   }
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/device.hpp"
#include "trident/core/dtype.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/parallel/topology.hpp"
#include "trident/train/trainable_model.hpp"

namespace trident::train {

// What a factory is given: the model flags of a job (trident-train's "Model" group).
struct ModelArgs {
  std::string name;  // the registered name (--model), e.g. "tiny", "gpt2", "llama-tiny"
  // Size overrides of the named preset; 0 = the preset's value.
  int64_t vocab = 0, block = 0, layers = 0, heads = 0, width = 0;
  // Rows of the embedding / output head: -1 = the family's default, 0 = no padding, else at
  // least the vocabulary.
  int64_t padded_vocab = -1;
  float dropout = 0.0f;
  uint64_t seed = 1337;  // initial weights (every layout starts from the same ones)
  Device device = Device::cpu();
  DType compute_dtype = DType::F32;  // activations' dtype (bf16: mixed precision)
  std::string load;  // weights written by trident-train (.safetensors) to start from, or ""
  std::string hf;    // a Hugging Face directory to start from, or "" (families that import it)
};

// A model resolved from its arguments, not yet built.
class ModelBuilder {
 public:
  virtual ~ModelBuilder() = default;
  // Token ids must lie in [0, vocab_size()) (the data is checked against it).
  virtual int64_t vocab_size() const = 0;
  // The longest sequence the model takes (its context).
  virtual int64_t max_seq_len() const = 0;
  // Throws trident::Error naming the flag when `layout` does not divide the model (e.g.
  // "--tp 3 does not divide 4 attention heads"). No communication.
  virtual void check_layout(const ParallelLayout& layout) const = 0;
  // One line for the log.
  virtual std::string describe() const = 0;
  // This rank's share under `ctx` on `ModelArgs::device`, with the weights the arguments ask
  // for. `ctx` (null: one process) must outlive the model.
  virtual std::unique_ptr<TrainableModel> build(const ParallelContext* ctx) const = 0;
};

using ModelFactory = std::function<std::unique_ptr<ModelBuilder>(const ModelArgs&)>;

class ModelRegistry {
 public:
  // Registers `factory` under `name` (a --model value); `help` is shown in --help and errors.
  // Throws trident::Error when the name is taken.
  void add(const std::string& name, const std::string& help, ModelFactory factory);
  bool contains(const std::string& name) const;
  // The registered names, sorted, and "name: help" lines.
  std::vector<std::string> names() const;
  std::string help() const;
  // The factory registered under args.name; throws trident::Error listing the names otherwise.
  std::unique_ptr<ModelBuilder> resolve(const ModelArgs& args) const;

 private:
  struct Entry {
    std::string help;
    ModelFactory factory;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace trident::train
