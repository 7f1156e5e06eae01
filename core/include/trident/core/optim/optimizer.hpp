// Optimizers (same math as torch.optim), global-norm gradient clipping and LR schedules.
// State is fp32 and lives on the parameters' device. A parameter without a gradient is skipped.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/tensor.hpp"

namespace trident::optim {

// The tensors of a multi-tensor update as the backend reads them in one launch
// (Backend::optimizer_table_write), in the parameters' device memory: written when the tensors
// change (pointers, sizes, weight decays, first steps) and reused otherwise, so every step's
// launch reads the same table (a CUDA graph replays it). Not written during a graph capture.
class OptimizerTable {
 public:
  // The table of `tensors` (all on `device`), rewritten only when they differ from the last.
  const void* get(Device device, const std::vector<OptimizerTensor>& tensors);
  // Allocates room for `count` tensors now (optimizers call it when they are built: a table
  // first allocated at the end of step 1 would take a block of the caching allocator that
  // step 2's activations then miss, a cudaMalloc inside a step).
  void reserve(Device device, int count);
  const void* data() const { return storage_.raw_data(); }  // as get() returned it
  int count() const { return static_cast<int>(key_.size()); }
  int64_t units() const { return units_; }  // what optimizer_table_write returned
  // Times the table was written (tests: once per parameter set).
  int64_t writes() const { return writes_; }

 private:
  std::vector<OptimizerTensor> key_;
  Device device_;
  Tensor storage_;
  int64_t units_ = 0, writes_ = 0;
};

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
  // (The clip factor too: grad_scale below is then not used.)
  void use_step_scalars(const void* scalars) { step_scalars_ = scalars; }
  // Every gradient is read as grad * scale (f32) by the following step()s: gradient clipping
  // folded into the update (no pass over the gradients; they stay as they are). 1 by default.
  void set_grad_scale(float scale) { grad_scale_ = scale; }
  float grad_scale() const { return grad_scale_; }
  // The device tables of the last step() (one per run of parameters on one device).
  const std::vector<OptimizerTable>& tables() const { return tables_; }

 protected:
  // For every run of parameters with a gradient on one device (in practice one run: all of
  // them), the table of tensor(group, index, param, contiguous grad) of each, then
  // launch(backend, table): one multi-tensor update of all of them.
  void update_by_table(
      const std::function<OptimizerTensor(size_t, size_t, Tensor&, const Tensor&)>& tensor,
      const std::function<void(Backend&, const OptimizerTable&)>& launch);
  std::vector<ParamGroup> groups_;
  float lr_ = 1e-3f;
  int64_t step_ = 0;
  const void* step_scalars_ = nullptr;
  float grad_scale_ = 1.0f;
  std::vector<OptimizerTable> tables_;
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
// Scales every gradient by min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_
// (a pass over the gradients; the trainer folds the factor into the update instead,
// Optimizer::set_grad_scale),
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
