#include "trident/core/nn/layers.hpp"

#include "trident/core/ops.hpp"

namespace trident::nn {

namespace {
Tensor normal_param(const Shape& shape, Generator& gen, const InitOptions& init, double std) {
  Tensor t = Tensor::empty(shape, init.dtype, init.device);
  gen.normal_(t, 0.0, std);
  return t;
}
}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& gen,
               const InitOptions& init) {
  TRIDENT_CHECK(in_features > 0 && out_features > 0, "Linear(", in_features, ", ", out_features,
                "): sizes must be positive");
  weight =
      register_parameter("weight", normal_param({out_features, in_features}, gen, init, init.std));
  if (has_bias) {
    bias = register_parameter("bias", Tensor::zeros({out_features}, init.dtype, init.device));
  }
}

Tensor Linear::forward(const Tensor& x) {
  return ops::linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, const InitOptions& init) {
  weight = register_parameter("weight", normal_param({num, dim}, gen, init, init.std));
}

Tensor Embedding::forward(const Tensor& ids) {
  return ops::embedding(ids, weight);
}

LayerNorm::LayerNorm(int64_t dim, double eps_, const InitOptions& init) : eps(eps_) {
  weight = register_parameter("weight", Tensor::ones({dim}, init.dtype, init.device));
  bias = register_parameter("bias", Tensor::zeros({dim}, init.dtype, init.device));
}

Tensor LayerNorm::forward(const Tensor& x) {
  return ops::layer_norm(x, weight, bias, eps);
}

Tensor GELU::forward(const Tensor& x) {
  return ops::gelu(x);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0f) return x;
  const uint64_t offset = gen_.advance(static_cast<uint64_t>(x.numel()));
  return ops::dropout(x, p_, true, gen_.seed(), offset);
}

void Sequential::push_back(std::shared_ptr<UnaryModule> m) {
  register_module(std::to_string(first_index_ + static_cast<int64_t>(layers_.size())), m);
  layers_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& layer : layers_) h = layer->forward(h);
  return h;
}

}  // namespace trident::nn
