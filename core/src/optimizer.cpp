#include "trident/core/optim/optimizer.hpp"

#include <cmath>

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
  for_each_param_with_grad([&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
    Tensor& buf = momentum_[gi][i];
    const bool first = !buf.defined();
    if (opts_.momentum != 0 && first) buf = Tensor::empty(p.shape(), DType::F32, p.device());
    backend_for(p.device())
        .sgd_update(p.data<float>(), gc.data<float>(), buf.defined() ? buf.data<float>() : nullptr,
                    p.numel(), lr_, opts_.momentum, opts_.dampening, groups_[gi].weight_decay,
                    opts_.nesterov, first);
  });
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
  for_each_param_with_grad([&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
    backend_for(p.device())
        .adamw_update(p.data<float>(), gc.data<float>(), m_[gi][i].data<float>(),
                      v_[gi][i].data<float>(), p.numel(), lr_, opts_.beta1, opts_.beta2, opts_.eps,
                      groups_[gi].weight_decay, step_);
  });
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_of(size_t group, size_t index) {
  return {{"exp_avg", m_.at(group).at(index)}, {"exp_avg_sq", v_.at(group).at(index)}};
}

double grad_sum_squares(const std::vector<Tensor>& params) {
  double s = 0;
  for (const auto& p : params) {
    const Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    const Tensor gc = g.contiguous();
    s += backend_for(g.device()).sum_squares(g.dtype(), gc.raw_data(), g.numel());
  }
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
