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
  const ParallelContext& ctx = model.parallel();
  const Topology& topo = ctx.topology();
  Communicator& tpc = ctx.tp();
  std::map<std::string, Tensor> mine;  // full tensors of this stage (on tp rank 0)
  const auto specs = model.named_shard_specs();
  const auto params = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor local = params[i].second.to(Device::cpu()).contiguous();
    const nn::ShardSpec& spec = specs[i].second;
    Tensor full = local;
    if (spec.sharded()) {
      Tensor all = Tensor::empty({tpc.size() * local.numel()}, local.dtype());
      tpc.all_gather(local.raw_data(), all.raw_data(), static_cast<size_t>(local.numel()),
                     local.dtype());
      std::vector<Tensor> pieces;
      for (int r = 0; r < tpc.size(); ++r) {
        pieces.push_back(all.slice(0, r * local.numel(), (r + 1) * local.numel()).reshape(local.shape()));
      }
      full = spec.assemble(pieces);
    }
    mine[params[i].first] = full;
  }
  // Stage s (dp 0, tp 0) sends its tensors to stage 0 over the pipeline group, in name order.
  std::map<std::string, Tensor> out;
  if (topo.dp_rank() != 0 || topo.tp_rank() != 0) return out;
  Communicator& ppc = ctx.pp();
  const int stages = ppc.size();
  if (topo.pp_rank() == 0) {
    out = mine;
    for (int s = 1; s < stages; ++s) {
      int64_t count = 0;
      ppc.recv(&count, 1, DType::I64, s, 901);
      for (int64_t k = 0; k < count; ++k) {
        int64_t meta[9] = {0};
        ppc.recv(meta, 9, DType::I64, s, 902);
        std::string name(static_cast<size_t>(meta[0]), '\0');
        ppc.recv(name.data(), name.size(), DType::U8, s, 903);
        Shape shape(meta + 2, meta + 2 + meta[1]);
        Tensor t = Tensor::empty(shape, DType::F32);
        ppc.recv(t.raw_data(), static_cast<size_t>(t.numel()), DType::F32, s, 904);
        out.emplace(name, t);  // the tied wte of the last stage duplicates the first's
      }
    }
  } else {
    int64_t count = static_cast<int64_t>(mine.size());
    ppc.send(&count, 1, DType::I64, 0, 901);
    for (auto& [name, t] : mine) {
      TRIDENT_CHECK(t.dim() <= 7, "parameter ", name, " has more than 7 dimensions");
      int64_t meta[9] = {static_cast<int64_t>(name.size()), t.dim()};
      for (int d = 0; d < t.dim(); ++d) meta[2 + d] = t.size(d);
      ppc.send(meta, 9, DType::I64, 0, 902);
      ppc.send(name.data(), name.size(), DType::U8, 0, 903);
      Tensor f = t.to(DType::F32);
      ppc.send(f.raw_data(), static_cast<size_t>(f.numel()), DType::F32, 0, 904);
    }
  }
  return topo.world_rank() == 0 ? out : std::map<std::string, Tensor>{};
}

void save_model(const std::map<std::string, Tensor>& params, const models::GPTConfig& c,
                const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  SafetensorsWriter w;
  for (auto& [name, p] : params) w.add_f32(name, p.shape(), p.to_vector<float>());
  w.set_metadata("vocab_size", std::to_string(c.vocab_size));
  w.set_metadata("block_size", std::to_string(c.block_size));
  w.set_metadata("n_layer", std::to_string(c.n_layer));
  w.set_metadata("n_head", std::to_string(c.n_head));
  w.set_metadata("n_embd", std::to_string(c.n_embd));
  w.set_metadata("format", "trident-gpt");
  w.write(path);
}

}  // namespace trident::train
