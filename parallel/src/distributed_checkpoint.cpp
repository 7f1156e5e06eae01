#include "trident/parallel/distributed_checkpoint.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>

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

// Boxes (in local coordinates) covering elements [lo, hi) of the row-major sub-tensor of
// `shape` from dimension d on, below the fixed leading coordinates `prefix`.
void flat_range_boxes(const Shape& shape, size_t d, std::vector<int64_t>& prefix, int64_t lo,
                      int64_t hi, std::vector<Hyperslab>& out) {
  if (lo >= hi) return;
  const size_t n = shape.size();
  auto box = [&](int64_t start, int64_t count) {
    Hyperslab b;
    b.start = prefix;
    b.count.assign(prefix.size(), 1);
    b.start.push_back(start);
    b.count.push_back(count);
    for (size_t k = d + 1; k < n; ++k) {
      b.start.push_back(0);
      b.count.push_back(shape[k]);
    }
    out.push_back(std::move(b));
  };
  int64_t inner = 1;
  for (size_t k = d + 1; k < n; ++k) inner *= shape[k];
  if (d + 1 == n) return box(lo, hi - lo);
  int64_t first_full = lo / inner;
  if (lo % inner != 0) {  // a partial slab at the start
    prefix.push_back(first_full);
    flat_range_boxes(shape, d + 1, prefix, lo % inner, std::min(hi - first_full * inner, inner),
                     out);
    prefix.pop_back();
    ++first_full;
  }
  const int64_t end_full = hi / inner;
  if (first_full < end_full) box(first_full, end_full - first_full);
  if (hi % inner != 0 && end_full >= first_full) {  // a partial slab at the end
    prefix.push_back(end_full);
    flat_range_boxes(shape, d + 1, prefix, 0, hi % inner, out);
    prefix.pop_back();
  }
}

// Elements [n * r / parts, n * (r + 1) / parts): part r of n elements split evenly.
std::pair<int64_t, int64_t> even_part(int64_t n, int r, int parts) {
  return {n * r / parts, n * (r + 1) / parts};
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

std::vector<Hyperslab> shard_hyperslabs(const Shape& local_shape, const nn::ShardSpec& spec,
                                        int64_t lo, int64_t hi) {
  std::vector<Hyperslab> local;
  std::vector<int64_t> prefix;
  if (local_shape.empty()) {  // a scalar: one element
    if (lo < hi) local.push_back({});
    return local;
  }
  flat_range_boxes(local_shape, 0, prefix, lo, hi, local);
  if (!spec.sharded()) return local;
  // Local index x along the split dimension sits at (x / piece) * block + index * piece +
  // x % piece of the full tensor (ShardSpec::slice): cut boxes at piece boundaries.
  const size_t d = static_cast<size_t>(spec.dim);
  const int64_t piece = local_shape[d] / spec.blocks, block = piece * spec.parts;
  // A box cut into pieces along d must stay a contiguous run of the shard (readers and writers
  // move each box through one memory block): a box spanning several pieces and more than one
  // index of a dimension before d is first cut into boxes of one index there.
  std::vector<Hyperslab> runs;
  for (const Hyperslab& b : local) {
    const bool cut = b.start[d] / piece != (b.start[d] + b.count[d] - 1) / piece;
    bool leading = false;
    for (size_t k = 0; k < d; ++k) leading = leading || b.count[k] > 1;
    if (!cut || !leading) {
      runs.push_back(b);
      continue;
    }
    std::vector<int64_t> at(b.start.begin(), b.start.begin() + static_cast<std::ptrdiff_t>(d));
    while (true) {  // every index of the dimensions before d, row-major
      Hyperslab one = b;
      for (size_t k = 0; k < d; ++k) {
        one.start[k] = at[k];
        one.count[k] = 1;
      }
      runs.push_back(std::move(one));
      size_t k = d;
      while (k > 0 && ++at[k - 1] == b.start[k - 1] + b.count[k - 1]) {
        at[k - 1] = b.start[k - 1];
        --k;
      }
      if (k == 0) break;
    }
  }
  std::vector<Hyperslab> out;
  for (const Hyperslab& b : runs) {
    int64_t x = b.start[d];
    const int64_t end = x + b.count[d];
    while (x < end) {
      const int64_t stop = std::min(end, (x / piece + 1) * piece);
      Hyperslab f = b;
      f.start[d] = (x / piece) * block + spec.index * piece + x % piece;
      f.count[d] = stop - x;
      out.push_back(std::move(f));
      x = stop;
    }
  }
  return out;
}

void save_training_state(ParallelCheckpointWriter& writer, const nn::Module& model,
                         optim::Optimizer& optimizer, const ParallelContext& ctx,
                         Communicator& world) {
  const Topology& topo = ctx.topology();
  auto* zero = dynamic_cast<ZeroAdamW*>(&optimizer);
  const auto params = model.named_parameters();
  const auto specs = model.named_shard_specs();
  struct Local {  // one tensor this rank holds
    size_t param = 0;
    std::string state;
    Tensor data;              // CPU f32, contiguous: the local shard, or the ZeRO-1 part
    int64_t lo = 0, hi = -1;  // ZeRO-1 part of the flattened shard (hi < 0: whole shard)
  };
  std::map<std::string, Local> mine;  // "param/state"
  std::ostringstream listing;         // "pp_rank\nparam\tstate\td0,d1,...\n"...
  listing << topo.pp_rank() << '\n';
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i].second;
    std::vector<std::pair<std::string, Tensor>> held{{"value", p}};
    std::pair<int64_t, int64_t> range{0, -1};
    const Slot slot = find_slot(optimizer, p);
    if (slot.found) {
      for (auto& st : optimizer.state_of(slot.group, slot.index)) held.push_back(std::move(st));
      if (zero) range = zero->shard_range(slot.group, slot.index);
    }
    const Shape full = specs[i].second.full_shape(p.shape());
    for (auto& [state, t] : held) {
      Local l{i, state, t.to(Device::cpu()).to(DType::F32).contiguous()};
      if (zero && state != "value") std::tie(l.lo, l.hi) = range;
      listing << params[i].first << '\t' << state << '\t';
      for (size_t d = 0; d < full.size(); ++d) listing << (d ? "," : "") << full[d];
      listing << '\n';
      mine.emplace(params[i].first + "/" + state, std::move(l));
    }
  }
  // Every rank's listing: the datasets to create (on every rank, in one order) and the stage
  // that owns each (the lowest that holds it: the tied embedding is the first stage's).
  struct Entry {
    std::vector<int64_t> shape;
    int owner_stage = 0;
  };
  std::map<std::string, Entry> all;  // "param/state", sorted
  for (const auto& [rank, text] : all_gather_rank_strings(listing.str(), world)) {
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    const int stage = std::stoi(line);
    while (std::getline(in, line)) {
      const size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
      std::vector<int64_t> shape;
      std::istringstream dims(line.substr(t2 + 1));
      for (std::string d; std::getline(dims, d, ',');) shape.push_back(std::stoll(d));
      const std::string key = line.substr(0, t1) + "/" + line.substr(t1 + 1, t2 - t1 - 1);
      auto [it, fresh] = all.emplace(key, Entry{shape, stage});
      if (!fresh) it->second.owner_stage = std::min(it->second.owner_stage, stage);
    }
  }
  int64_t total = 0;
  for (const auto& [key, entry] : all) {
    int64_t n = 1;
    for (int64_t d : entry.shape) n *= d;
    total += n * static_cast<int64_t>(sizeof(float));
  }
  writer.expect_bytes(total);
  const int dp = topo.layout().dp, dp_rank = topo.dp_rank();
  const int tp = topo.layout().tp, tp_rank = topo.tp_rank();
  for (const auto& [key, entry] : all) {
    const size_t slash = key.rfind('/');
    const std::string param = key.substr(0, slash), state = key.substr(slash + 1);
    std::vector<Hyperslab> boxes;
    const float* data = nullptr;
    auto it = mine.find(key);
    if (it != mine.end() && entry.owner_stage == topo.pp_rank()) {
      const Local& l = it->second;
      const Tensor& p = params[l.param].second;
      const nn::ShardSpec& spec = specs[l.param].second;
      // A parameter that tp does not split is held whole by every tp rank: they split it too.
      const int tp_parts = spec.sharded() ? 1 : tp, tp_index = spec.sharded() ? 0 : tp_rank;
      if (l.hi >= 0) {  // ZeRO-1: this rank's part (1-D), split over tp when tp replicates it
        const auto [a, b] = even_part(l.hi - l.lo, tp_index, tp_parts);
        boxes = shard_hyperslabs(p.shape(), spec, l.lo + a, l.lo + b);
        data = l.data.data<float>() + a;
      } else {  // held by every dp (and tp) replica: an even part each
        const auto [lo, hi] = even_part(l.data.numel(), tp_index * dp + dp_rank, tp_parts * dp);
        boxes = shard_hyperslabs(p.shape(), spec, lo, hi);
        data = l.data.data<float>() + lo;
      }
    }
    writer.write(param, state, entry.shape, boxes, data);
  }
  writer.set_meta("optimizer_steps", optimizer.steps_taken());
}

void load_training_state(const CheckpointReader& reader, nn::Module& model,
                         optim::Optimizer& optimizer) {
  auto* zero = dynamic_cast<ZeroAdamW*>(&optimizer);
  const auto params = model.named_parameters();
  const auto specs = model.named_shard_specs();
  // Reads elements [lo, hi) of this rank's shard (`local` shape) of a full tensor, checking
  // the shape first; hi < 0: the whole shard, in its shape.
  auto read_shard = [&](const std::string& name, const std::string& state,
                        const nn::ShardSpec& spec, const Shape& local, int64_t lo, int64_t hi) {
    TRIDENT_CHECK(reader.has(name, state), reader.path(), ": no ", state, " for parameter ", name,
                  state == "value" ? " (a checkpoint of another model?)"
                                   : " (saved with another optimizer?)");
    const Shape want = spec.full_shape(local);
    const auto got = reader.shape(name, state);
    TRIDENT_CHECK(Shape(got.begin(), got.end()) == want, reader.path(), ": ", name, "/", state,
                  " has shape ", Tensor::empty(Shape(got.begin(), got.end())).shape_str(),
                  " but the model expects ", Tensor::empty(want).shape_str(),
                  " (different model sizes?)");
    int64_t numel = 1;
    for (int64_t d : local) numel *= d;
    Tensor out = hi < 0 ? Tensor::empty(local, DType::F32) : Tensor::empty({hi - lo}, DType::F32);
    reader.read_hyperslabs(name, state,
                           shard_hyperslabs(local, spec, hi < 0 ? 0 : lo, hi < 0 ? numel : hi),
                           out.data<float>());
    return out;
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    const nn::ShardSpec& spec = specs[i].second;
    {
      NoGradGuard no_grad;
      Tensor dst = p;
      dst.copy_(read_shard(name, "value", spec, p.shape(), 0, -1).to(p.device()).to(p.dtype()));
    }
    const Slot slot = find_slot(optimizer, p);
    if (!slot.found) continue;
    const auto range =
        zero ? zero->shard_range(slot.group, slot.index) : std::pair<int64_t, int64_t>{0, -1};
    for (auto& [state, t] : optimizer.state_of(slot.group, slot.index)) {
      t.copy_(read_shard(name, state, spec, p.shape(), range.first, range.second).to(t.device()));
    }
  }
  optimizer.set_steps_taken(reader.meta_int("optimizer_steps"));
}

std::map<int, std::string> gather_rank_strings(const std::string& mine, Communicator& world) {
  auto all = all_gather_rank_strings(mine, world);
  if (world.rank() != 0) all.clear();
  return all;
}

std::map<int, std::string> all_gather_rank_strings(const std::string& mine, Communicator& world) {
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
