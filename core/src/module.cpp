#include "trident/core/nn/module.hpp"

#include "trident/core/allocator.hpp"

namespace trident::nn {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  TRIDENT_CHECK(name.find('.') == std::string::npos, "parameter name '", name,
                "' must not contain a dot");
  t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, p] : params_) out.emplace_back(prefix + name, p);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters()) out.push_back(p);
  return out;
}

Tensor Module::parameter(const std::string& dotted_name) const {
  for (auto& [name, p] : named_parameters()) {
    if (name == dotted_name) return p;
  }
  throw Error(str_cat("no parameter named '", dotted_name, "'"));
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

void Module::to(Device device) {
  for (auto& p : parameters()) {
    if (p.device() == device) continue;
    NoGradGuard no_grad;
    Tensor moved = p.to(device);
    p.impl().storage = moved.impl().storage;
    p.impl().offset = moved.offset();
    p.impl().strides = moved.strides();
    p.zero_grad();
  }
}

}  // namespace trident::nn
