#include "trident/parallel/distributed_checkpoint.hpp"

#include <functional>
#include <set>
#include <sstream>

#include "trident/core/nn/layers.hpp"
#include "trident/parallel/zero_optimizer.hpp"

namespace trident {

namespace {

struct Slot {  // where a parameter sits in the optimizer's groups
  size_t group = 0, index = 0;
  bool found = false;
};

Slot find_slot(const optim::Optimizer& opt, const Tensor& p) {
  const auto& groups = opt.groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params.size(); ++i) {
      if (groups[g].params[i].same(p)) return {g, i, true};
    }
  }
  return {};
}

// The tensors saved for one parameter, in this rank's local shape (ZeRO state already
// gathered over dp, so every dp replica holds the full local state).
std::vector<std::pair<std::string, Tensor>> local_state(const Tensor& param, const Slot& slot,
                                                        optim::Optimizer* opt, ZeroAdamW* zero) {
  std::vector<std::pair<std::string, Tensor>> out{{"value", param}};
  if (opt == nullptr || !slot.found) return out;
  auto state =
      zero ? zero->gather_state(slot.group, slot.index) : opt->state_of(slot.group, slot.index);
  for (auto& s : state) out.push_back(std::move(s));
  return out;
}

// The full tensor from this rank's tp shard (collective over tp when sharded).
Tensor assemble_over_tp(const Tensor& local_in, const nn::ShardSpec& spec, Communicator& tp) {
  Tensor local = local_in.to(Device::cpu()).contiguous();
  if (!spec.sharded()) return local;
  Tensor all = Tensor::empty({tp.size() * local.numel()}, local.dtype());
  tp.all_gather(local.raw_data(), all.raw_data(), static_cast<size_t>(local.numel()),
                local.dtype());
  std::vector<Tensor> pieces;
  for (int r = 0; r < tp.size(); ++r) {
    pieces.push_back(
        all.slice(0, r * local.numel(), (r + 1) * local.numel()).reshape(local.shape()));
  }
  return spec.assemble(pieces);
}

// Point-to-point stream of (param, state, tensor) entries from a stage to stage 0.
constexpr int kTagCount = 911, kTagMeta = 912, kTagName = 913, kTagData = 914;
constexpr int kMaxDims = 8;

void send_entry(Communicator& pp, const std::string& key, const Tensor& full) {
  const Tensor f = full.to(DType::F32).contiguous();
  TRIDENT_CHECK(f.dim() <= kMaxDims, "checkpoint: ", key, " has more than ", kMaxDims, " dims");
  int64_t meta[2 + kMaxDims] = {static_cast<int64_t>(key.size()), f.dim()};
  for (int d = 0; d < f.dim(); ++d) meta[2 + d] = f.size(d);
  pp.send(meta, 2 + kMaxDims, DType::I64, 0, kTagMeta);
  pp.send(key.data(), key.size(), DType::U8, 0, kTagName);
  pp.send(f.raw_data(), static_cast<size_t>(f.numel()), DType::F32, 0, kTagData);
}

std::pair<std::string, Tensor> recv_entry(Communicator& pp, int src) {
  int64_t meta[2 + kMaxDims] = {0};
  pp.recv(meta, 2 + kMaxDims, DType::I64, src, kTagMeta);
  std::string key(static_cast<size_t>(meta[0]), '\0');
  pp.recv(key.data(), key.size(), DType::U8, src, kTagName);
  Tensor t = Tensor::empty(Shape(meta + 2, meta + 2 + meta[1]), DType::F32);
  pp.recv(t.raw_data(), static_cast<size_t>(t.numel()), DType::F32, src, kTagData);
  return {key, t};
}

void for_each_dropout(const nn::Module& m, const std::string& prefix,
                      const std::function<void(const std::string&, nn::Dropout&)>& fn) {
  for (const auto& [name, child] : m.named_children()) {
    const std::string full = prefix.empty() ? name : prefix + "." + name;
    if (auto* d = dynamic_cast<nn::Dropout*>(child.get())) fn(full, *d);
    for_each_dropout(*child, full, fn);
  }
}

}  // namespace

void gather_full_state(const nn::Module& model, optim::Optimizer* optimizer,
                       const ParallelContext& ctx, const FullTensorSink& sink) {
  const Topology& topo = ctx.topology();
  auto* zero = dynamic_cast<ZeroAdamW*>(optimizer);
  const auto params = model.named_parameters();
  const auto specs = model.named_shard_specs();
  const bool first_replica = topo.dp_rank() == 0 && topo.tp_rank() == 0;
  Communicator& pp = ctx.pp();

  // Full tensors of this stage, on its first replica (dp 0, tp 0).
  std::vector<std::pair<std::string, Tensor>> entries;  // "param/state" -> tensor
  for (size_t i = 0; i < params.size(); ++i) {
    const Slot slot = optimizer ? find_slot(*optimizer, params[i].second) : Slot{};
    const auto state =
        local_state(params[i].second, slot, optimizer, zero);  // dp collective with ZeRO
    if (topo.dp_rank() != 0) continue;
    for (const auto& [name, t] : state) {
      Tensor full = assemble_over_tp(t, specs[i].second, ctx.tp());  // collective over tp
      if (first_replica) entries.emplace_back(params[i].first + "/" + name, full);
    }
  }
  if (!first_replica) return;
  if (topo.pp_rank() != 0) {
    int64_t count = static_cast<int64_t>(entries.size());
    pp.send(&count, 1, DType::I64, 0, kTagCount);
    for (const auto& [key, t] : entries) send_entry(pp, key, t);
    return;
  }
  // The tied token embedding lives on the first and the last stage: the first copy wins.
  std::set<std::string> seen;
  auto deliver = [&](const std::string& key, const Tensor& t) {
    if (!seen.insert(key).second) return;
    const size_t slash = key.rfind('/');
    sink(key.substr(0, slash), key.substr(slash + 1), t);
  };
  for (const auto& [key, t] : entries) deliver(key, t);
  for (int s = 1; s < pp.size(); ++s) {
    int64_t count = 0;
    pp.recv(&count, 1, DType::I64, s, kTagCount);
    for (int64_t k = 0; k < count; ++k) {
      const auto [key, t] = recv_entry(pp, s);
      deliver(key, t);
    }
  }
}

void save_training_state(CheckpointWriter* writer, const nn::Module& model,
                         optim::Optimizer& optimizer, const ParallelContext& ctx) {
  TRIDENT_CHECK((writer != nullptr) == (ctx.topology().world_rank() == 0),
                "save_training_state: world rank 0, and only it, passes a writer");
  gather_full_state(model, &optimizer, ctx,
                    [&](const std::string& param, const std::string& state, const Tensor& full) {
                      const Tensor f = full.to(DType::F32).contiguous();
                      writer->add(param, state,
                                  std::vector<int64_t>(f.shape().begin(), f.shape().end()),
                                  f.data<float>());
                    });
  if (writer) writer->set_meta("optimizer_steps", optimizer.steps_taken());
}

void load_training_state(const CheckpointReader& reader, nn::Module& model,
                         optim::Optimizer& optimizer) {
  auto* zero = dynamic_cast<ZeroAdamW*>(&optimizer);
  const auto params = model.named_parameters();
  const auto specs = model.named_shard_specs();
  // Reads a full tensor and cuts this rank's tp shard, checking the shape first.
  auto read_shard = [&](const std::string& name, const std::string& state,
                        const nn::ShardSpec& spec, const Tensor& local) {
    TRIDENT_CHECK(reader.has(name, state), reader.path(), ": no ", state, " for parameter ", name,
                  state == "value" ? " (a checkpoint of another model?)"
                                   : " (saved with another optimizer?)");
    const Shape want = spec.full_shape(local.shape());
    const auto got = reader.shape(name, state);
    TRIDENT_CHECK(Shape(got.begin(), got.end()) == want, reader.path(), ": ", name, "/", state,
                  " has shape ", Tensor::empty(Shape(got.begin(), got.end())).shape_str(),
                  " but the model expects ", Tensor::empty(want).shape_str(),
                  " (different model sizes?)");
    Tensor full = Tensor::from_vector(reader.read(name, state), want);
    return spec.sharded() ? spec.slice(full) : full;
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    const nn::ShardSpec& spec = specs[i].second;
    {
      NoGradGuard no_grad;
      Tensor dst = p;
      dst.copy_(read_shard(name, "value", spec, p).to(p.device()));
    }
    const Slot slot = find_slot(optimizer, p);
    if (!slot.found) continue;
    if (zero) {
      for (const char* state : {"exp_avg", "exp_avg_sq"}) {
        zero->load_state(slot.group, slot.index, state, read_shard(name, state, spec, p));
      }
      continue;
    }
    for (auto& [state, t] : optimizer.state_of(slot.group, slot.index)) {
      t.copy_(read_shard(name, state, spec, p).to(t.device()));
    }
  }
  optimizer.set_steps_taken(reader.meta_int("optimizer_steps"));
}

std::map<int, std::string> gather_rank_strings(const std::string& mine, Communicator& world) {
  const int n = world.size();
  int64_t len = static_cast<int64_t>(mine.size());
  std::vector<int64_t> lens(static_cast<size_t>(n));
  world.all_gather(&len, lens.data(), 1, DType::I64);
  int64_t longest = 1;
  for (int64_t l : lens) longest = std::max(longest, l);
  std::string padded = mine;
  padded.resize(static_cast<size_t>(longest), '\0');
  std::string all(static_cast<size_t>(longest * n), '\0');
  world.all_gather(padded.data(), all.data(), static_cast<size_t>(longest), DType::U8);
  std::map<int, std::string> out;
  if (world.rank() != 0) return out;
  for (int r = 0; r < n; ++r) {
    out[r] = all.substr(static_cast<size_t>(r * longest), static_cast<size_t>(lens[r]));
  }
  return out;
}

std::string dropout_offsets(const nn::Module& model) {
  std::ostringstream out;
  for_each_dropout(model, "", [&](const std::string& name, nn::Dropout& d) {
    out << name << '=' << d.generator().offset() << ';';
  });
  return out.str();
}

void set_dropout_offsets(nn::Module& model, const std::string& offsets) {
  std::map<std::string, uint64_t> want;
  std::istringstream in(offsets);
  std::string item;
  while (std::getline(in, item, ';')) {
    const size_t eq = item.find('=');
    TRIDENT_CHECK(eq != std::string::npos, "bad dropout offsets entry '", item, "'");
    want[item.substr(0, eq)] = std::stoull(item.substr(eq + 1));
  }
  for_each_dropout(model, "", [&](const std::string& name, nn::Dropout& d) {
    auto it = want.find(name);
    TRIDENT_CHECK(it != want.end(), "no saved random-stream offset for ", name);
    d.generator().set_state(d.generator().seed(), it->second);
  });
}

}  // namespace trident
