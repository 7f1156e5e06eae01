#include "model_io.hpp"

#include <filesystem>

#include "trident/io/safetensors.hpp"
#include "trident/models/hf_gpt2.hpp"
#include "trident/parallel/distributed_checkpoint.hpp"

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

std::unique_ptr<models::GPT> build_model(const Options& opt, const models::GPTConfig& cfg,
                                         Device device, const ParallelContext* ctx) {
  auto model = std::make_unique<models::GPT>(cfg, opt.seed, Device::cpu(), ctx);
  if (!opt.hf.empty()) {
    model->load_named(models::load_hf_gpt2(opt.hf).tensors);
  } else if (!opt.load.empty()) {
    auto f = SafetensorsFile::open(opt.load);
    std::map<std::string, std::vector<float>> values;
    for (auto& [name, p] : model->named_parameters()) values[name] = f.read_f32(name);
    model->load_named(values);
  }
  model->to(device);
  model->set_compute_dtype(opt.precision == "bf16" ? DType::BF16 : DType::F32);
  return model;
}

std::map<std::string, Tensor> gather_full_parameters(const models::GPT& model) {
  std::map<std::string, Tensor> out;
  gather_full_state(model, nullptr, model.parallel(),
                    [&](const std::string& param, const std::string&, const Tensor& full) {
                      out.emplace(param, full);
                    });
  return out;
}

void save_model(const std::map<std::string, Tensor>& params, const models::GPTConfig& c,
                const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  SafetensorsWriter w;
  for (auto& [name, p] : params) w.add_f32(name, p.shape(), p.to_vector<float>());
  w.set_metadata("vocab_size", std::to_string(c.vocab_size));
  w.set_metadata("padded_vocab_size", std::to_string(c.padded_vocab_size));
  w.set_metadata("block_size", std::to_string(c.block_size));
  w.set_metadata("n_layer", std::to_string(c.n_layer));
  w.set_metadata("n_head", std::to_string(c.n_head));
  w.set_metadata("n_embd", std::to_string(c.n_embd));
  w.set_metadata("format", "trident-gpt");
  w.write(path);
}

}  // namespace trident::train
