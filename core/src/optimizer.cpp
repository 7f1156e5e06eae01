#include "trident/core/optim/optimizer.hpp"

#include <algorithm>
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
  int count = 0;
  bool one_device = true;
  Device device;
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      check_param(p);
      one_device = one_device && (count == 0 || p.device() == device);
      device = p.device();
      ++count;
    }
  }
  // The table of one multi-tensor update of every parameter, allocated before any step.
  if (count > 0 && one_device) {
    tables_.resize(1);
    tables_[0].reserve(device, count);
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

namespace {
bool same_tensor(const OptimizerTensor& a, const OptimizerTensor& b) {
  return a.param == b.param && a.grad == b.grad && a.state1 == b.state1 && a.state2 == b.state2 &&
         a.n == b.n && a.weight_decay == b.weight_decay && a.first_step == b.first_step;
}
}  // namespace

void OptimizerTable::reserve(Device device, int count) {
  const auto bytes = static_cast<int64_t>(backend_for(device).optimizer_table_bytes(count));
  if (!storage_.defined() || device != device_ || storage_.numel() < bytes) {
    storage_ = Tensor::empty({std::max<int64_t>(bytes, 1)}, DType::U8, device);
    key_.clear();  // nothing written yet
    device_ = device;
  }
}

const void* OptimizerTable::get(Device device, const std::vector<OptimizerTensor>& tensors) {
  const bool same = storage_.defined() && device == device_ && tensors.size() == key_.size() &&
                    std::equal(tensors.begin(), tensors.end(), key_.begin(), same_tensor);
  if (!same) {
    const int count = static_cast<int>(tensors.size());
    reserve(device, count);  // the storage is kept while it is large enough: the same address
    units_ = backend_for(device).optimizer_table_write(storage_.raw_data(), tensors.data(), count);
    key_ = tensors;
    ++writes_;
  }
  return storage_.raw_data();
}

void Optimizer::update_by_table(
    const std::function<OptimizerTensor(size_t, size_t, Tensor&, const Tensor&)>& tensor,
    const std::function<void(Backend&, const OptimizerTable&)>& launch) {
  std::vector<Tensor> keep;  // contiguous gradients, alive until their update is queued
  std::vector<OptimizerTensor> run;
  Device device;
  size_t runs = 0;
  const auto flush = [&] {
    if (run.empty()) return;
    if (tables_.size() <= runs) tables_.resize(runs + 1);
    OptimizerTable& table = tables_[runs++];
    table.get(device, run);
    launch(backend_for(device), table);
    keep.clear();
    run.clear();
  };
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor grad = g.params[i].grad();
      if (!grad.defined()) continue;
      Tensor& p = g.params[i];
      if (!run.empty() && p.device() != device) flush();
      device = p.device();
      keep.push_back(grad.contiguous());
      run.push_back(tensor(gi, i, p, keep.back()));
    }
  }
  flush();
}

void SGD::step() {
  ++step_;
  // Every parameter with a gradient in one multi-tensor update (per device).
  update_by_table(
      [&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
        Tensor& buf = momentum_[gi][i];
        const bool first = !buf.defined();
        if (opts_.momentum != 0 && first) buf = Tensor::empty(p.shape(), DType::F32, p.device());
        return OptimizerTensor{p.data<float>(),
                               gc.data<float>(),
                               buf.defined() ? buf.data<float>() : nullptr,
                               nullptr,
                               p.numel(),
                               groups_[gi].weight_decay,
                               first};
      },
      [&](Backend& be, const OptimizerTable& t) {
        if (step_scalars_ != nullptr) {
          be.sgd_update_table_step(t.data(), t.count(), t.units(), opts_.momentum, opts_.dampening,
                                   opts_.nesterov, step_scalars_);
        } else {
          be.sgd_update_table(t.data(), t.count(), t.units(), lr_, opts_.momentum, opts_.dampening,
                              opts_.nesterov, grad_scale_);
        }
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
  // Every parameter with a gradient in one multi-tensor update (per device).
  update_by_table(
      [&](size_t gi, size_t i, Tensor& p, const Tensor& gc) {
        return OptimizerTensor{p.data<float>(),
                               gc.data<float>(),
                               m_[gi][i].data<float>(),
                               v_[gi][i].data<float>(),
                               p.numel(),
                               groups_[gi].weight_decay,
                               false};
      },
      [&](Backend& be, const OptimizerTable& t) {
        if (step_scalars_ != nullptr) {
          be.adamw_update_table_step(t.data(), t.count(), t.units(), opts_.beta1, opts_.beta2,
                                     opts_.eps, step_scalars_);
        } else {
          be.adamw_update_table(t.data(), t.count(), t.units(), lr_, opts_.beta1, opts_.beta2,
                                opts_.eps, step_, grad_scale_);
        }
      });
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
