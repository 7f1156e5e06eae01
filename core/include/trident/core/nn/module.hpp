// Module: the base of every layer and model, as in the PyTorch C++ frontend. A module registers
// its parameters and children by name; named_parameters() walks them depth-first in
// registration order and joins names with dots ("blocks.3.attn.qkv.weight"), so names are
// stable across runs, layouts and checkpoints.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/tensor.hpp"

namespace trident::nn {

// How a parameter held by this rank relates to the full (unsharded) parameter: the full tensor
// is split along `dim` into `parts` equal pieces and this rank holds piece `index`. With
// `blocks` > 1 the dimension is first cut into that many equal blocks (q|k|v of a fused
// projection) and each block is split the same way, the rank holding its piece of every block.
// dim < 0: not sharded (replicated).
struct ShardSpec {
  int dim = -1;
  int parts = 1;
  int index = 0;
  int blocks = 1;
  bool sharded() const { return dim >= 0 && parts > 1; }
  Shape full_shape(const Shape& local) const;
  // The piece of `full` this rank holds (a new contiguous tensor).
  Tensor slice(const Tensor& full) const;
  // The inverse: the full tensor from every rank's piece (pieces[i] from index i).
  Tensor assemble(const std::vector<Tensor>& pieces) const;
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // The shard spec of every parameter, by the same dotted names.
  std::vector<std::pair<std::string, ShardSpec>> named_shard_specs() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  // Throws trident::Error naming the parameter when absent.
  Tensor parameter(const std::string& dotted_name) const;
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  // Moves every parameter to `device` in place (handles held by members stay valid).
  void to(Device device);

 protected:
  Tensor register_parameter(const std::string& name, Tensor t, ShardSpec spec = {});
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  template <typename T, typename Get>
  void collect(const std::string& prefix, std::vector<std::pair<std::string, T>>& out,
               const Get& get) const;
  struct Param {
    std::string name;
    Tensor tensor;
    ShardSpec spec;
  };
  std::vector<Param> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace trident::nn
