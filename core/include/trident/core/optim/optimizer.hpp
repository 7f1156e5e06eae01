// Optimizers (same math as torch.optim), global-norm gradient clipping and LR schedules.
// State is fp32 and lives on the parameters' device. A parameter without a gradient is skipped.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "trident/core/tensor.hpp"

namespace trident::optim {

// Parameters sharing hyper-parameters; weight decay is per group (GPT training usually decays
// only matrices, not biases, LayerNorm parameters or embeddings' positions).
struct ParamGroup {
  std::vector<Tensor> params;
  float weight_decay = 0.0f;
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  void set_lr(float lr) { lr_ = lr; }
  float lr() const { return lr_; }
  int64_t steps_taken() const { return step_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Named optimizer state per parameter (e.g. "exp_avg"), for checkpoints.
  virtual std::vector<std::pair<std::string, Tensor>> state_of(size_t group, size_t index) = 0;
  void set_steps_taken(int64_t s) { step_ = s; }
  // With a device step block (Backend::step_scalars_bytes(), null to go back), step() reads
  // the learning rate, the step count and whether to skip from it when its kernels run, not
  // from set_lr() and steps_taken(): a step queued without host synchronisation (CUDA only).
  void use_step_scalars(const void* scalars) { step_scalars_ = scalars; }

 protected:
  // Calls update(group, index, param, contiguous grad) for every parameter that has a gradient.
  void for_each_param_with_grad(
      const std::function<void(size_t, size_t, Tensor&, const Tensor&)>& update);
  std::vector<ParamGroup> groups_;
  float lr_ = 1e-3f;
  int64_t step_ = 0;
  const void* step_scalars_ = nullptr;
};

struct SGDOptions {
  float lr = 0.1f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  bool nesterov = false;
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, const SGDOptions& opts);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state_of(size_t group, size_t index) override;

 private:
  SGDOptions opts_;
  std::vector<std::vector<Tensor>> momentum_;  // [group][param], undefined until first step
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};

class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opts);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state_of(size_t group, size_t index) override;
  const AdamWOptions& options() const { return opts_; }

 private:
  AdamWOptions opts_;
  std::vector<std::vector<Tensor>> m_, v_;
};

// Sum over `params` of the squared gradient entries (gradients missing count as zero).
double grad_sum_squares(const std::vector<Tensor>& params);
// Scales every gradient by min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_,
// where norm = sqrt(all_reduce_sum(local sum of squares)); returns the norm before clipping.
// `all_reduce_sum` makes the norm global across ranks (identity for one process).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm,
                      const std::function<double(double)>& all_reduce_sum = nullptr);

// Linear warmup to max_lr over `warmup` steps, then cosine decay to min_lr at `total` steps
// (llm.c's schedule): step s (0-based) gets max_lr*(s+1)/warmup while s < warmup.
struct CosineSchedule {
  float max_lr = 1e-3f;
  float min_lr = 1e-4f;
  int64_t warmup = 0;
  int64_t total = 1;
  float lr(int64_t step) const;
};

}  // namespace trident::optim
