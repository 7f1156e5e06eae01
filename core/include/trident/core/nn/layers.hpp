// Standard layers. Each is a plain Module with a forward(); initialisation takes a Generator so
// that runs are reproducible from the seed. Attention and MLP blocks are the tensor-parallel
// layers of trident/parallel/tensor_parallel.hpp (one implementation, any tp including 1).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "trident/core/nn/module.hpp"
#include "trident/core/rng.hpp"

namespace trident::nn {

// A module with one input and one output, the element type of Sequential.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

struct InitOptions {
  double std = 0.02;  // weights ~ N(0, std^2), as GPT-2; biases start at zero
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// y = x W^T + b, W (out, in) as torch.nn.Linear.
class Linear : public UnaryModule {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen,
         const InitOptions& init = {});
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

// ids (i32) -> rows of weight (num, dim).
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, Generator& gen, const InitOptions& init = {});
  Tensor forward(const Tensor& ids);
  Tensor weight;
};

class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, const InitOptions& init = {});
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  double eps;
};

class GELU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
};

// Inverted dropout with its own counter-based stream: call k of a module draws the values
// following call k-1's, so two runs with the same seed drop the same elements.
class Dropout : public UnaryModule {
 public:
  Dropout(float p, uint64_t seed) : p_(p), gen_(seed) {}
  Tensor forward(const Tensor& x) override;
  float p() const { return p_; }
  // The mask stream (its offset is checkpointed so a resumed run drops the same elements).
  Generator& generator() { return gen_; }
  const Generator& generator() const { return gen_; }

 private:
  float p_;
  Generator gen_;
};

class Sequential : public UnaryModule {
 public:
  // Children are named first_index, first_index + 1, ... in the order pushed (a pipeline
  // stage holding blocks 4..7 of a model names them "4".."7").
  explicit Sequential(int64_t first_index = 0) : first_index_(first_index) {}
  void push_back(std::shared_ptr<UnaryModule> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<UnaryModule>& operator[](size_t i) const { return layers_[i]; }

 private:
  std::vector<std::shared_ptr<UnaryModule>> layers_;
  int64_t first_index_ = 0;
};

}  // namespace trident::nn
