#include "trident/models/llama_stage.hpp"

#include <map>

#include "model_parts.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/hf_llama.hpp"

namespace trident::models {

namespace {

class LlamaBuilder final : public train::ModelBuilder {
 public:
  LlamaBuilder(LlamaConfig cfg, train::ModelArgs args) : cfg_(cfg), args_(std::move(args)) {}
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  int64_t max_seq_len() const override { return cfg_.block_size; }
  std::string describe() const override { return cfg_.describe(); }
  void check_layout(const ParallelLayout& L) const override {
    cfg_.validate_tp(L.tp);
    detail::check_pp_divides_layers(L.pp, cfg_.n_layer);
  }
  std::unique_ptr<train::TrainableModel> build(const ParallelContext* ctx) const override {
    auto model = std::make_unique<Llama>(cfg_, args_.seed, Device::cpu(), ctx);
    if (!args_.hf.empty()) {
      model->load_named(load_hf_llama(args_.hf).tensors);
    } else if (!args_.load.empty()) {
      model->load_named(detail::read_parameters(args_.load, *model));
    }
    model->to(args_.device);
    model->set_compute_dtype(args_.compute_dtype);
    return std::make_unique<LlamaStage>(std::move(model));
  }

 private:
  LlamaConfig cfg_;
  train::ModelArgs args_;
};

}  // namespace

nlohmann::json LlamaStage::config() const {
  const LlamaConfig& c = model_.config();
  return {{"vocab_size", c.vocab_size}, {"block_size", c.block_size}, {"n_layer", c.n_layer},
          {"n_head", c.n_head},         {"n_kv_head", c.n_kv_head},   {"n_embd", c.n_embd},
          {"ffn_hidden", c.ffn_hidden}, {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}};
}

std::vector<std::pair<std::string, std::string>> LlamaStage::weights_metadata() const {
  const LlamaConfig& c = model_.config();
  auto num = [](double v) { return nlohmann::json(v).dump(); };  // shortest round-trip text
  return {{"vocab_size", std::to_string(c.vocab_size)},
          {"block_size", std::to_string(c.block_size)},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_head", std::to_string(c.n_head)},
          {"n_kv_head", std::to_string(c.n_kv_head)},
          {"n_embd", std::to_string(c.n_embd)},
          {"ffn_hidden", std::to_string(c.ffn_hidden)},
          {"rope_theta", num(c.rope_theta)},
          {"norm_eps", num(c.norm_eps)},
          {"format", "trident-llama"}};
}

LlamaConfig resolve_llama_config(const train::ModelArgs& a) {
  TRIDENT_CHECK(a.load.empty() || a.hf.empty(), "give --load or --hf, not both");
  TRIDENT_CHECK(a.padded_vocab <= 0, "--padded-vocab is not supported by the Llama models");
  TRIDENT_CHECK(a.dropout == 0.0f, "the Llama models have no dropout (--dropout ", a.dropout, ")");
  LlamaConfig c;
  if (!a.hf.empty()) {
    c = llama_config_from_hf(read_hf_config(a.hf + "/config.json"), a.hf + "/config.json");
  } else if (!a.load.empty()) {
    auto f = SafetensorsFile::open(a.load);
    const auto& m = f.metadata();
    auto get = [&](const char* key) {
      auto it = m.find(key);
      TRIDENT_CHECK(it != m.end(), a.load, ": no '", key,
                    "' in the metadata: not a Llama written by trident-train");
      return std::stod(it->second);
    };
    TRIDENT_CHECK(m.count("format") != 0 && m.at("format") == "trident-llama", a.load,
                  ": not a Llama written by trident-train (format ",
                  m.count("format") ? m.at("format") : std::string("missing"), ")");
    c.vocab_size = static_cast<int64_t>(get("vocab_size"));
    c.block_size = static_cast<int64_t>(get("block_size"));
    c.n_layer = static_cast<int64_t>(get("n_layer"));
    c.n_head = static_cast<int64_t>(get("n_head"));
    c.n_kv_head = static_cast<int64_t>(get("n_kv_head"));
    c.n_embd = static_cast<int64_t>(get("n_embd"));
    c.ffn_hidden = static_cast<int64_t>(get("ffn_hidden"));
    c.rope_theta = get("rope_theta");
    c.norm_eps = get("norm_eps");
  } else {
    c = LlamaConfig::preset(a.name);
    if (a.vocab) c.vocab_size = a.vocab;
    if (a.block) c.block_size = a.block;
    if (a.layers) c.n_layer = a.layers;
    if (a.heads) c.n_head = a.heads;
    if (a.width) {
      c.n_embd = a.width;
      c.ffn_hidden = (8 * a.width / 3 + 15) / 16 * 16;
    }
  }
  c.validate();
  return c;
}

std::unique_ptr<train::ModelBuilder> make_llama_builder(const train::ModelArgs& args) {
  return std::make_unique<LlamaBuilder>(resolve_llama_config(args), args);
}

void register_llama_models(train::ModelRegistry& registry) {
  for (const std::string& name : LlamaConfig::preset_names()) {
    registry.add(name, str_cat("Llama 3 architecture, ", LlamaConfig::preset(name).describe()),
                 make_llama_builder);
  }
}

}  // namespace trident::models
