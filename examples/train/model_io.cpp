#include "model_io.hpp"

#include <filesystem>

#include "trident/core/safetensors.hpp"
#include "trident/models/hf_gpt2.hpp"

namespace trident::train {

models::GPTConfig Options::model_config() const {
  models::GPTConfig c = models::GPTConfig::preset(model);
  if (vocab) c.vocab_size = vocab;
  if (block) c.block_size = block;
  if (layers) c.n_layer = layers;
  if (heads) c.n_head = heads;
  if (width) c.n_embd = width;
  c.dropout = dropout;
  c.validate();
  return c;
}

namespace {
models::GPTConfig config_from_metadata(const SafetensorsFile& f) {
  const auto& m = f.metadata();
  auto get = [&](const char* key) {
    auto it = m.find(key);
    TRIDENT_CHECK(it != m.end(), f.path(), ": no '", key,
                  "' in the metadata: not a model written by trident-train");
    return std::stoll(it->second);
  };
  models::GPTConfig c;
  c.vocab_size = get("vocab_size");
  c.block_size = get("block_size");
  c.n_layer = get("n_layer");
  c.n_head = get("n_head");
  c.n_embd = get("n_embd");
  c.validate();
  return c;
}
}  // namespace

std::unique_ptr<models::GPT> build_model(const Options& opt, Device device) {
  TRIDENT_CHECK(opt.load.empty() || opt.hf.empty(), "give --load or --hf, not both");
  if (!opt.hf.empty()) {
    models::HFGPT2Checkpoint ck = models::load_hf_gpt2(opt.hf);
    ck.config.dropout = opt.dropout;
    auto model = std::make_unique<models::GPT>(ck.config, opt.seed);
    model->load_named(ck.tensors);
    model->to(device);
    return model;
  }
  if (!opt.load.empty()) {
    auto f = SafetensorsFile::open(opt.load);
    models::GPTConfig cfg = config_from_metadata(f);
    cfg.dropout = opt.dropout;
    auto model = std::make_unique<models::GPT>(cfg, opt.seed);
    std::map<std::string, std::vector<float>> values;
    for (auto& [name, p] : model->named_parameters()) values[name] = f.read_f32(name);
    model->load_named(values);
    model->to(device);
    return model;
  }
  return std::make_unique<models::GPT>(opt.model_config(), opt.seed, device);
}

void save_model(const models::GPT& model, const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  SafetensorsWriter w;
  for (auto& [name, p] : model.named_parameters()) {
    w.add_f32(name, p.shape(), p.to_vector<float>());
  }
  const models::GPTConfig& c = model.config();
  w.set_metadata("vocab_size", std::to_string(c.vocab_size));
  w.set_metadata("block_size", std::to_string(c.block_size));
  w.set_metadata("n_layer", std::to_string(c.n_layer));
  w.set_metadata("n_head", std::to_string(c.n_head));
  w.set_metadata("n_embd", std::to_string(c.n_embd));
  w.set_metadata("format", "trident-gpt");
  w.write(path);
}

}  // namespace trident::train
