#include "trident/core/nn/module.hpp"

#include "trident/core/allocator.hpp"

namespace trident::nn {

Shape ShardSpec::full_shape(const Shape& local) const {
  Shape full = local;
  if (sharded()) full[static_cast<size_t>(dim)] *= parts;
  return full;
}

Tensor ShardSpec::slice(const Tensor& full) const {
  if (!sharded()) return full.contiguous();
  const int64_t n = full.size(dim);
  TRIDENT_CHECK(n % (blocks * parts) == 0, "cannot split dimension ", dim, " of ", full.shape_str(),
                " into ", blocks, " blocks of ", parts, " parts");
  const int64_t block = n / blocks, piece = block / parts;
  Shape local = full.shape();
  local[static_cast<size_t>(dim)] = n / parts;
  Tensor out = Tensor::empty(local, full.dtype(), full.device());
  for (int b = 0; b < blocks; ++b) {
    const int64_t src = b * block + index * piece;
    out.slice(dim, b * piece, (b + 1) * piece).copy_(full.slice(dim, src, src + piece));
  }
  return out;
}

Tensor ShardSpec::assemble(const std::vector<Tensor>& pieces) const {
  if (!sharded()) return pieces.at(0);
  TRIDENT_CHECK(static_cast<int>(pieces.size()) == parts, "assemble: ", pieces.size(),
                " pieces for a parameter split in ", parts);
  const Tensor& first = pieces[0];
  Tensor full = Tensor::empty(full_shape(first.shape()), first.dtype(), first.device());
  const int64_t local = first.size(dim), piece = local / blocks, block = piece * parts;
  for (int r = 0; r < parts; ++r) {
    for (int b = 0; b < blocks; ++b) {
      const int64_t dst = b * block + r * piece;
      full.slice(dim, dst, dst + piece)
          .copy_(pieces[static_cast<size_t>(r)].slice(dim, b * piece, (b + 1) * piece));
    }
  }
  return full;
}

Tensor Module::register_parameter(const std::string& name, Tensor t, ShardSpec spec) {
  TRIDENT_CHECK(name.find('.') == std::string::npos, "parameter name '", name,
                "' must not contain a dot");
  t.requires_grad_(true);
  params_.push_back({name, t, spec});
  return t;
}

template <typename T, typename Get>
void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, T>>& out,
                     const Get& get) const {
  for (const auto& p : params_) out.emplace_back(prefix + p.name, get(p));
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, get);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out, [](const Param& p) { return p.tensor; });
  return out;
}

std::vector<std::pair<std::string, ShardSpec>> Module::named_shard_specs() const {
  std::vector<std::pair<std::string, ShardSpec>> out;
  collect("", out, [](const Param& p) { return p.spec; });
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
