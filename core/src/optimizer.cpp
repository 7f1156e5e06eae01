#include "trident/core/optim/optimizer.hpp"

#include <cmath>
#include <memory>

#include "trident/core/backend.hpp"

namespace trident::optim {

namespace {
void check_param(const Tensor& p) {
  TRIDENT_CHECK(p.dtype() == DType::F32, "optimizers keep fp32 master weights; got a ",
                dtype_name(p.dtype()), " parameter of shape ", p.shape_str());
  TRIDENT_CHECK(p.is_contiguous(), "optimizer parameter of shape ", p.shape_str(),
                " is not contiguous");
}
}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (auto& g : groups_) {
    for (auto& p : g.params) check_param(p);
  }
}

void Optimizer::zero_grad() {
  for (auto& g : groups_) {
    for (auto& p : g.params) p.zero_grad();
  }
}

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& opts)
    : Optimizer(std::move(groups)), opts_(opts) {
  TRIDENT_CHECK(opts.lr >= 0, "SGD: negative learning rate ", opts.lr);
  TRIDENT_CHECK(!opts.nesterov || (opts.momentum > 0 && opts.dampening == 0),
                "SGD: Nesterov momentum needs momentum > 0 and zero dampening");
  lr_ = opts.lr;
  for (auto& g : groups_) momentum_.emplace_back(g.params.size());
}

void Optimizer::for_each_param_with_grad(
    const std::function<void(size_t, size_t, Tensor&, const Tensor&)>& update) {
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor grad = g.params[i].grad();
      if (grad.defined()) update(gi, i, g.params[i], grad.contiguous());
    }
  }
}

void SGD::step() {
  ++step_;
  // One multi-tensor call per run of parameters sharing a group and a device.
  std::vector<Tensor> keep;  // contiguous gradients, alive until their update is queued
  std::vector<float*> ps, bufs;
  std::vector<const float*> gs;
  std::vector<int64_t> ns;
  size_t total = 1;
  for (const auto& g : groups_) total += g.params.size();
  const std::unique_ptr<bool[]> firsts = std::make_unique<bool[]>(total);
  size_t group = 0;
  Device device;
  const auto flush = [&] {
    if (!ps.empty() && step_scalars_ != nullptr) {
      backend_for(device).sgd_update_multi_step(
          static_cast<int>(ps.size()), ps.data(), gs.data(), bufs.data(), ns.data(), firsts.get(),
          opts_.momentum, opts_.dampening, groups_[group].weight_decay, opts_.nesterov,
          step_scalars_);
    } else if (!ps.empty()) {
      backend_for(device).sgd_update_multi(
          static_cast<int>(ps.size()), ps.data(), gs.data(), bufs.data(), ns.data(), firsts.get(),
          lr_, opts_.momentum, opts_.dampening, groups_[group].weight_decay, opts_.nesterov);
    }
    keep.clear();
    ps.clear();
    bufs.clear();
    gs.clear();
    ns.clear();
  };
  for_each_param_with_grad([&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
    if (!ps.empty() && (gi != group || p.device() != device)) flush();
    group = gi;
    device = p.device();
    Tensor& buf = momentum_[gi][i];
    const bool first = !buf.defined();
    if (opts_.momentum != 0 && first) buf = Tensor::empty(p.shape(), DType::F32, p.device());
    firsts[ps.size()] = first;
    keep.push_back(gc);
    ps.push_back(p.data<float>());
    gs.push_back(gc.data<float>());
    bufs.push_back(buf.defined() ? buf.data<float>() : nullptr);
    ns.push_back(p.numel());
  });
  flush();
}

std::vector<std::pair<std::string, Tensor>> SGD::state_of(size_t group, size_t index) {
  if (opts_.momentum == 0) return {};
  Tensor& buf = momentum_.at(group).at(index);
  if (!buf.defined()) {
    const Tensor& p = groups_[group].params[index];
    buf = Tensor::zeros(p.shape(), DType::F32, p.device());
  }
  return {{"momentum_buffer", buf}};
}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opts)
    : Optimizer(std::move(groups)), opts_(opts) {
  TRIDENT_CHECK(opts.lr >= 0, "AdamW: negative learning rate ", opts.lr);
  TRIDENT_CHECK(opts.beta1 >= 0 && opts.beta1 < 1 && opts.beta2 >= 0 && opts.beta2 < 1,
                "AdamW: betas must be in [0, 1), got ", opts.beta1, ", ", opts.beta2);
  lr_ = opts.lr;
  for (auto& g : groups_) {
    m_.emplace_back();
    v_.emplace_back();
    for (auto& p : g.params) {
      m_.back().push_back(Tensor::zeros(p.shape(), DType::F32, p.device()));
      v_.back().push_back(Tensor::zeros(p.shape(), DType::F32, p.device()));
    }
  }
}

void AdamW::step() {
  ++step_;
  // One multi-tensor call per run of parameters sharing a group and a device.
  std::vector<Tensor> keep;  // contiguous gradients, alive until their update is queued
  std::vector<float*> ps, ms, vs;
  std::vector<const float*> gs;
  std::vector<int64_t> ns;
  size_t group = 0;
  Device device;
  const auto flush = [&] {
    if (!ps.empty() && step_scalars_ != nullptr) {
      backend_for(device).adamw_update_multi_step(
          static_cast<int>(ps.size()), ps.data(), gs.data(), ms.data(), vs.data(), ns.data(),
          opts_.beta1, opts_.beta2, opts_.eps, groups_[group].weight_decay, step_scalars_);
    } else if (!ps.empty()) {
      backend_for(device).adamw_update_multi(
          static_cast<int>(ps.size()), ps.data(), gs.data(), ms.data(), vs.data(), ns.data(), lr_,
          opts_.beta1, opts_.beta2, opts_.eps, groups_[group].weight_decay, step_);
    }
    keep.clear();
    ps.clear();
    ms.clear();
    vs.clear();
    gs.clear();
    ns.clear();
  };
  for_each_param_with_grad([&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
    if (!ps.empty() && (gi != group || p.device() != device)) flush();
    group = gi;
    device = p.device();
    keep.push_back(gc);
    ps.push_back(p.data<float>());
    gs.push_back(gc.data<float>());
    ms.push_back(m_[gi][i].data<float>());
    vs.push_back(v_[gi][i].data<float>());
    ns.push_back(p.numel());
  });
  flush();
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_of(size_t group, size_t index) {
  return {{"exp_avg", m_.at(group).at(index)}, {"exp_avg_sq", v_.at(group).at(index)}};
}

double grad_sum_squares(const std::vector<Tensor>& params) {
  // Runs of gradients sharing a device and dtype go to the backend in one call (one pass and
  // one readback on a GPU); the CPU sums them one by one in order, as before.
  std::vector<Tensor> run;
  std::vector<const void*> ptrs;
  std::vector<int64_t> ns;
  double s = 0;
  const auto flush = [&] {
    if (!run.empty()) {
      s += backend_for(run[0].device())
               .sum_squares_multi(run[0].dtype(), ptrs.data(), ns.data(),
                                  static_cast<int>(run.size()));
    }
    run.clear();
    ptrs.clear();
    ns.clear();
  };
  for (const auto& p : params) {
    const Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    const Tensor gc = g.contiguous();
    if (!run.empty() && (gc.device() != run[0].device() || gc.dtype() != run[0].dtype())) flush();
    run.push_back(gc);
    ptrs.push_back(gc.raw_data());
    ns.push_back(gc.numel());
  }
  flush();
  return s;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm,
                      const std::function<double(double)>& all_reduce_sum) {
  double sq = grad_sum_squares(params);
  if (all_reduce_sum) sq = all_reduce_sum(sq);
  const double norm = std::sqrt(sq);
  TRIDENT_CHECK(max_norm > 0, "gradient clipping needs a positive max norm, got ", max_norm);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    for (const auto& p : params) {
      Tensor g = p.grad();
      if (!g.defined() || g.numel() == 0) continue;
      TRIDENT_CHECK(g.is_contiguous(), "clip_grad_norm: non-contiguous gradient");
      backend_for(g.device()).scale(g.dtype(), g.raw_data(), g.raw_data(), coef, g.numel());
    }
  }
  return norm;
}

float CosineSchedule::lr(int64_t step) const {
  if (step < warmup) return max_lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (total <= warmup) return max_lr;
  double ratio = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  if (ratio > 1.0) ratio = 1.0;
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
  return static_cast<float>(min_lr + coeff * (max_lr - min_lr));
}

}  // namespace trident::optim
