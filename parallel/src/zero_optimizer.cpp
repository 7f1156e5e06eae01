#include "trident/parallel/zero_optimizer.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <unordered_map>

#include "trident/core/backend.hpp"
#include "trident/trace/trace.hpp"

namespace trident {

ZeroAdamW::ZeroAdamW(DataParallelReducer& reducer, std::vector<optim::ParamGroup> groups,
                     const optim::AdamWOptions& opts)
    : Optimizer(std::move(groups)), reducer_(reducer), opts_(opts) {
  TRIDENT_CHECK(reducer.options().zero,
                "ZeroAdamW needs a DataParallelReducer built with zero = true (--zero 1)");
  TRIDENT_CHECK(opts.lr >= 0, "ZeroAdamW: negative learning rate ", opts.lr);
  TRIDENT_CHECK(opts.beta1 >= 0 && opts.beta1 < 1 && opts.beta2 >= 0 && opts.beta2 < 1,
                "ZeroAdamW: betas must be in [0, 1), got ", opts.beta1, ", ", opts.beta2);
  lr_ = opts.lr;

  const auto& named = reducer.named_parameters();
  const auto& buckets = reducer.buckets();
  // Where each of the reducer's parameters lives.
  std::unordered_map<const TensorImpl*, std::pair<size_t, int64_t>> where;  // bucket, offset
  std::unordered_map<const TensorImpl*, const std::string*> name_of;
  for (size_t b = 0; b < buckets.size(); ++b) {
    for (size_t s = 0; s < buckets[b].params.size(); ++s) {
      const auto& [name, p] = named[buckets[b].params[s]];
      where[&p.impl()] = {b, buckets[b].offsets[s]};
      name_of[&p.impl()] = &name;
    }
  }

  pieces_.resize(buckets.size());
  placement_.resize(groups_.size());
  std::unordered_map<const TensorImpl*, bool> taken;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& group = groups_[gi];
    for (const Tensor& p : group.params) {
      const auto it = where.find(&p.impl());
      TRIDENT_CHECK(it != where.end(), "ZeroAdamW: a parameter of shape ", p.shape_str(),
                    " in group ", gi, " is not one of the data-parallel reducer's parameters");
      TRIDENT_CHECK(!taken[&p.impl()], "ZeroAdamW: parameter '", *name_of[&p.impl()],
                    "' is in more than one group");
      taken[&p.impl()] = true;
      const auto [b, offset] = it->second;
      const GradientBucket& bucket = buckets[b];
      // The part of the parameter inside this rank's shard, split off as a piece.
      const int64_t a = std::max(offset, bucket.shard_begin);
      const int64_t e = std::min(offset + p.numel(), bucket.shard_begin + bucket.shard_numel);
      Placement pl{b, offset, 0, 0};
      if (a < e) {
        pl.lo = a - offset;
        pl.hi = e - offset;
        pieces_[b].push_back(Piece{a, e - a, group.weight_decay});
      }
      placement_[gi].push_back(pl);
    }
  }
  tables_.resize(buckets.size());  // one multi-tensor update per bucket, allocated now
  for (size_t b = 0; b < buckets.size(); ++b) {
    if (!pieces_[b].empty())
      tables_[b].reserve(buckets[b].values.device(), static_cast<int>(pieces_[b].size()));
  }
  for (const auto& bucket : buckets) {
    const Device device = bucket.values.device();
    exp_avg_.push_back(Tensor::zeros({bucket.shard_numel}, DType::F32, device));
    exp_avg_sq_.push_back(Tensor::zeros({bucket.shard_numel}, DType::F32, device));
  }
}

void ZeroAdamW::step() {
  ++step_;
  const auto& buckets = reducer_.buckets();
  Communicator& dp = reducer_.dp();
  std::vector<std::shared_ptr<Work>> gathers;
  gathers.reserve(buckets.size());
  for (size_t b = 0; b < buckets.size(); ++b) {
    reducer_.wait_bucket(b);  // returns at once after reducer.finish()
    const GradientBucket& bucket = buckets[b];
    Backend& be = backend_for(bucket.values.device());
    float* values = bucket.values.data<float>();
    const float* grads = bucket.shard_grads.data<float>();
    trace::Span span("zero adamw shard", trace::Category::Optimizer);
    span.arg("bucket", static_cast<int64_t>(b));
    span.arg("numel", bucket.shard_numel);
    float* m = exp_avg_[b].data<float>();
    float* v = exp_avg_sq_[b].data<float>();
    // The shard's pieces in one multi-tensor update (their table written once, reused).
    std::vector<OptimizerTensor> tensors;
    for (const Piece& piece : pieces_[b]) {
      const int64_t r = piece.begin - bucket.shard_begin;
      tensors.push_back(OptimizerTensor{values + piece.begin, grads + r, m + r, v + r, piece.numel,
                                        piece.weight_decay, false});
    }
    if (!tensors.empty()) {
      optim::OptimizerTable& table = tables_[b];
      table.get(bucket.values.device(), tensors);
      be.adamw_update_table(table.data(), table.count(), table.units(), lr_, opts_.beta1,
                            opts_.beta2, opts_.eps, step_, grad_scale_);
    }
    // In place: this rank's block of `values` is its contribution. No host wait for the
    // updates: every communicator orders a device buffer's collective after the work queued on
    // the compute stream (NCCL on its stream, MPI through its staging copy).
    gathers.push_back(dp.all_gather_async(values + bucket.shard_begin, values,
                                          static_cast<size_t>(bucket.shard_numel), DType::F32));
  }
  const auto t0 = std::chrono::steady_clock::now();
  trace::Span span("wait all_gather (zero)", trace::Category::Comm);
  span.arg("buckets", static_cast<int64_t>(gathers.size()));
  for (auto& w : gathers) w->wait();
  exposed_gather_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Tensor& ZeroAdamW::state_buffer(size_t bucket, const std::string& name) {
  if (name == "exp_avg") return exp_avg_.at(bucket);
  if (name == "exp_avg_sq") return exp_avg_sq_.at(bucket);
  throw Error(str_cat("ZeroAdamW: no optimizer state named '", name,
                      "' (AdamW keeps exp_avg and exp_avg_sq)"));
}

std::pair<int64_t, int64_t> ZeroAdamW::shard_range(size_t group, size_t index) const {
  const Placement& pl = placement_.at(group).at(index);
  return {pl.lo, pl.hi};
}

std::vector<std::pair<std::string, Tensor>> ZeroAdamW::state_of(size_t group, size_t index) {
  const Placement& pl = placement_.at(group).at(index);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const char* name : {"exp_avg", "exp_avg_sq"}) {
    if (pl.lo == pl.hi) {
      out.emplace_back(name, Tensor::zeros({0}, DType::F32, exp_avg_.at(pl.bucket).device()));
      continue;
    }
    const int64_t r = pl.offset + pl.lo - reducer_.buckets()[pl.bucket].shard_begin;
    out.emplace_back(name, state_buffer(pl.bucket, name).slice(0, r, r + pl.hi - pl.lo));
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> ZeroAdamW::gather_state(size_t group, size_t index) {
  const Placement& pl = placement_.at(group).at(index);
  const Tensor& p = groups_.at(group).params.at(index);
  const GradientBucket& bucket = reducer_.buckets()[pl.bucket];
  std::vector<std::pair<std::string, Tensor>> out;
  for (const char* name : {"exp_avg", "exp_avg_sq"}) {
    Tensor full = Tensor::empty({bucket.numel}, DType::F32, p.device());
    reducer_.dp().all_gather(state_buffer(pl.bucket, name).raw_data(), full.raw_data(),
                             static_cast<size_t>(bucket.shard_numel), DType::F32);
    out.emplace_back(name,
                     full.slice(0, pl.offset, pl.offset + p.numel()).reshape(p.shape()).clone());
  }
  return out;
}

void ZeroAdamW::load_state(size_t group, size_t index, const std::string& name,
                           const Tensor& full) {
  const Placement& pl = placement_.at(group).at(index);
  const Tensor& p = groups_.at(group).params.at(index);
  TRIDENT_CHECK(full.numel() == p.numel(), "ZeroAdamW::load_state('", name,
                "'): ", full.shape_str(), " does not match the parameter's shape ", p.shape_str());
  Tensor& buffer = state_buffer(pl.bucket, name);
  if (pl.lo == pl.hi) return;
  const int64_t r = pl.offset + pl.lo - reducer_.buckets()[pl.bucket].shard_begin;
  buffer.slice(0, r, r + pl.hi - pl.lo)
      .copy_(full.contiguous().reshape({-1}).slice(0, pl.lo, pl.hi));
}

size_t ZeroAdamW::state_bytes() const {
  size_t bytes = 0;
  for (size_t b = 0; b < exp_avg_.size(); ++b)
    bytes += exp_avg_[b].nbytes() + exp_avg_sq_[b].nbytes();
  return bytes;
}

}  // namespace trident
