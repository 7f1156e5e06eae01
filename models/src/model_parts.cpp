#include "model_parts.hpp"

#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"

namespace trident::models::detail {

const ParallelContext* context_or_own(const ParallelContext* ctx,
                                      std::unique_ptr<ParallelContext>& own) {
  if (ctx != nullptr) return ctx;
  own = std::make_unique<ParallelContext>();
  return own.get();
}

void check_pp_divides_layers(int pp, int64_t n_layer) {
  TRIDENT_CHECK(n_layer % pp == 0, "--pp ", pp, " does not divide the model's ", n_layer,
                " layers");
}

StageLayers stage_layers(const Topology& topo, int64_t n_layer) {
  const int pp = topo.layout().pp;
  check_pp_divides_layers(pp, n_layer);
  StageLayers s;
  s.count = n_layer / pp;
  s.first = topo.pp_rank() * s.count;
  return s;
}

uint64_t name_hash(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void set_parameters_from_full(
    nn::Module& m, const std::function<void(const std::string& name, Tensor& full)>& fill) {
  NoGradGuard no_grad;
  const auto specs = m.named_shard_specs();
  const auto params = m.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    const nn::ShardSpec& spec = specs[i].second;
    Tensor full = Tensor::empty(spec.full_shape(p.shape()), DType::F32);
    fill(name, full);
    Tensor target = p;
    target.copy_(spec.slice(full));
  }
}

void load_parameters(nn::Module& m, const std::map<std::string, std::vector<float>>& values,
                     const AdaptValue& adapt) {
  NoGradGuard no_grad;
  const auto specs = m.named_shard_specs();
  const auto params = m.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    const nn::ShardSpec& spec = specs[i].second;
    auto it = values.find(name);
    TRIDENT_CHECK(it != values.end(), "weights have no tensor for parameter '", name, "'");
    const Shape full_shape = spec.full_shape(p.shape());
    Tensor full = adapt ? adapt(name, it->second, full_shape) : Tensor();
    if (!full.defined()) {
      TRIDENT_CHECK(static_cast<int64_t>(it->second.size()) == shape_numel(full_shape),
                    "parameter '", name, "' has ", shape_numel(full_shape), " elements ",
                    shape_to_string(full_shape), " but the weights hold ", it->second.size());
      full = Tensor::from_vector(it->second, full_shape);
    }
    Tensor target = p;
    target.copy_(spec.slice(full.to(p.device())));
  }
}

std::map<std::string, std::vector<float>> read_parameters(const std::string& path,
                                                          const nn::Module& m) {
  auto f = SafetensorsFile::open(path);
  std::map<std::string, std::vector<float>> values;
  for (auto& [name, p] : m.named_parameters()) values[name] = f.read_f32(name);
  return values;
}

}  // namespace trident::models::detail
