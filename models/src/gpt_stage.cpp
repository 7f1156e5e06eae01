#include "trident/models/gpt_stage.hpp"

#include "model_parts.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/hf_gpt2.hpp"

namespace trident::models {

namespace {

constexpr int64_t kGpt2Vocab = 50257;  // the GPT-2 presets' and Hugging Face GPT-2's vocabulary

class GPTBuilder final : public train::ModelBuilder {
 public:
  GPTBuilder(GPTConfig cfg, train::ModelArgs args) : cfg_(cfg), args_(std::move(args)) {}
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  int64_t max_seq_len() const override { return cfg_.block_size; }
  std::string describe() const override { return cfg_.describe(); }
  void check_layout(const ParallelLayout& L) const override {
    TRIDENT_CHECK(cfg_.n_head % L.tp == 0, "--tp ", L.tp, " does not divide ", cfg_.n_head,
                  " attention heads");
    TRIDENT_CHECK(cfg_.table_rows() % L.tp == 0, "--tp ", L.tp,
                  " does not divide the vocabulary of ", cfg_.table_rows(), " tokens");
    TRIDENT_CHECK(cfg_.table_rows() / L.tp > cfg_.table_rows() - cfg_.vocab_size, "--tp ", L.tp,
                  " gives slices of ", cfg_.table_rows() / L.tp, " rows, no more than the ",
                  cfg_.table_rows() - cfg_.vocab_size,
                  " padding rows: a slice would hold padding only (pad less)");
    detail::check_pp_divides_layers(L.pp, cfg_.n_layer);
  }
  std::unique_ptr<train::TrainableModel> build(const ParallelContext* ctx) const override {
    return std::make_unique<GPTStage>(build_gpt(cfg_, args_, ctx));
  }

 private:
  GPTConfig cfg_;
  train::ModelArgs args_;
};

}  // namespace

std::vector<train::TiedParameter> GPTStage::tied_parameters() const {
  const int pp = model_.parallel().layout().pp;
  if (pp == 1) return {};
  return {train::TiedParameter{{{0, "wte.weight"}, {pp - 1, "wte.weight"}}}};
}

nlohmann::json GPTStage::config() const {
  const GPTConfig& c = model_.config();
  return {{"vocab_size", c.vocab_size}, {"padded_vocab_size", c.table_rows()},
          {"block_size", c.block_size}, {"n_layer", c.n_layer},
          {"n_head", c.n_head},         {"n_embd", c.n_embd},
          {"dropout", c.dropout}};
}

void GPTStage::check_checkpoint_config(const nlohmann::json& saved, const std::string& path) const {
  const nlohmann::json want = config();
  for (const char* key : {"vocab_size", "block_size", "n_layer", "n_head", "n_embd"}) {
    TRIDENT_CHECK(saved.at(key) == want.at(key), path, ": written for a model with ", key, " = ",
                  saved.at(key).dump(), ", this run builds ", want.at(key).dump(),
                  " (pass the same model flags to resume)");
  }
  // Checkpoints from before padding existed hold no padded_vocab_size: unpadded.
  const nlohmann::json saved_rows = saved.value("padded_vocab_size", saved.at("vocab_size"));
  TRIDENT_CHECK(saved_rows == want.at("padded_vocab_size"), path,
                ": written for a model whose embedding has ", saved_rows.dump(),
                " rows, this run builds ", want.at("padded_vocab_size").dump(),
                " (pass --padded-vocab ", saved_rows.dump(), " to resume)");
}

std::vector<std::pair<std::string, std::string>> GPTStage::weights_metadata() const {
  const GPTConfig& c = model_.config();
  return {{"vocab_size", std::to_string(c.vocab_size)},
          {"padded_vocab_size", std::to_string(c.padded_vocab_size)},
          {"block_size", std::to_string(c.block_size)},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_head", std::to_string(c.n_head)},
          {"n_embd", std::to_string(c.n_embd)},
          {"format", "trident-gpt"}};
}

GPTConfig resolve_gpt_config(const train::ModelArgs& a) {
  TRIDENT_CHECK(a.load.empty() || a.hf.empty(), "give --load or --hf, not both");
  GPTConfig c;
  if (!a.hf.empty()) {
    c = read_hf_gpt2_config(a.hf + "/config.json");
  } else if (!a.load.empty()) {
    auto f = SafetensorsFile::open(a.load);
    const auto& m = f.metadata();
    auto get = [&](const char* key) {
      auto it = m.find(key);
      TRIDENT_CHECK(it != m.end(), a.load, ": no '", key,
                    "' in the metadata: not a model written by trident-train");
      return std::stoll(it->second);
    };
    c.vocab_size = get("vocab_size");
    if (m.count("padded_vocab_size") != 0) c.padded_vocab_size = get("padded_vocab_size");
    c.block_size = get("block_size");
    c.n_layer = get("n_layer");
    c.n_head = get("n_head");
    c.n_embd = get("n_embd");
  } else {
    c = GPTConfig::preset(a.name);
    if (a.vocab) c.vocab_size = a.vocab;
    if (a.block) c.block_size = a.block;
    if (a.layers) c.n_layer = a.layers;
    if (a.heads) c.n_head = a.heads;
    if (a.width) c.n_embd = a.width;
  }
  c.dropout = a.dropout;
  if (a.padded_vocab >= 0) {
    c.padded_vocab_size = a.padded_vocab;
  } else if (c.padded_vocab_size == 0 && c.vocab_size == kGpt2Vocab && a.device.is_cuda()) {
    // GPT-2 on a GPU: the LM head's leading dimension a multiple of 128 (llm.c's padding).
    c.padded_vocab_size = (kGpt2Vocab + 127) / 128 * 128;
  }
  c.validate();
  return c;
}

std::unique_ptr<GPT> build_gpt(const GPTConfig& cfg, const train::ModelArgs& a,
                               const ParallelContext* ctx) {
  auto model = std::make_unique<GPT>(cfg, a.seed, Device::cpu(), ctx);
  if (!a.hf.empty()) {
    model->load_named(load_hf_gpt2(a.hf).tensors);
  } else if (!a.load.empty()) {
    model->load_named(detail::read_parameters(a.load, *model));
  }
  model->to(a.device);
  model->set_compute_dtype(a.compute_dtype);
  return model;
}

std::unique_ptr<train::ModelBuilder> make_gpt_builder(const train::ModelArgs& args) {
  return std::make_unique<GPTBuilder>(resolve_gpt_config(args), args);
}

void register_gpt_models(train::ModelRegistry& registry) {
  for (const std::string& name : GPTConfig::preset_names()) {
    const GPTConfig c = GPTConfig::preset(name);
    registry.add(name, str_cat("GPT-2 architecture, ", c.describe()), make_gpt_builder);
  }
}

}  // namespace trident::models
