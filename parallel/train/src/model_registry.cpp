#include "trident/train/model_registry.hpp"

#include "trident/core/error.hpp"

namespace trident::train {

Tensor TrainableModel::logits(const Tensor& ids) {
  (void)ids;
  throw Error(describe() + ": this model does not provide logits(), which sampling needs");
}

void TrainableModel::check_checkpoint_config(const nlohmann::json& saved,
                                             const std::string& path) const {
  const nlohmann::json want = config();
  for (const auto& [key, value] : want.items()) {
    if (key == "dropout") continue;
    TRIDENT_CHECK(saved.contains(key) && saved.at(key) == value, path,
                  ": written for a model with ", key, " = ",
                  saved.contains(key) ? saved.at(key).dump() : std::string("(none)"),
                  ", this run builds ", value.dump(), " (pass the same model flags to resume)");
  }
}

void ModelRegistry::add(const std::string& name, const std::string& help, ModelFactory factory) {
  TRIDENT_CHECK(!name.empty() && factory, "ModelRegistry::add: a model needs a name and a factory");
  TRIDENT_CHECK(entries_.count(name) == 0, "ModelRegistry::add: the model name '", name,
                "' is already registered");
  entries_.emplace(name, Entry{help, std::move(factory)});
}

bool ModelRegistry::contains(const std::string& name) const {
  return entries_.count(name) != 0;
}

std::vector<std::string> ModelRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

std::string ModelRegistry::help() const {
  std::string out;
  for (const auto& [name, e] : entries_)
    out += str_cat(out.empty() ? "" : "\n", name, ": ", e.help);
  return out;
}

std::unique_ptr<ModelBuilder> ModelRegistry::resolve(const ModelArgs& args) const {
  const auto it = entries_.find(args.name);
  if (it == entries_.end()) {
    std::string list;
    for (const auto& [name, e] : entries_) list += str_cat(list.empty() ? "" : ", ", name);
    throw Error(str_cat("unknown model '", args.name, "': choose one of ", list));
  }
  auto builder = it->second.factory(args);
  TRIDENT_CHECK(builder != nullptr, "the factory of model '", args.name, "' built nothing");
  return builder;
}

}  // namespace trident::train
