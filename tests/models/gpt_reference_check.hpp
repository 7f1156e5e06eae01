// The PyTorch reference checks of the GPT (fixtures from tests/reference/make_gpt_fixtures.py),
// on any device: the CPU tests (test_gpt_reference.cpp) run them at 1e-5, the GPU tests
// (tests/gpu/test_gpt_cuda.cpp) on cuda at 1e-4. Needs TRIDENT_FIXTURE_DIR and Catch.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/gpt.hpp"

namespace trident::reference_check {

inline std::string fixture(const std::string& name) {
  return std::string(TRIDENT_FIXTURE_DIR) + "/" + name;
}

inline models::GPTConfig config_from(const SafetensorsFile& f) {
  const auto& m = f.metadata();
  models::GPTConfig c;
  c.vocab_size = std::stoll(m.at("vocab_size"));
  c.block_size = std::stoll(m.at("block_size"));
  c.n_layer = std::stoll(m.at("n_layer"));
  c.n_head = std::stoll(m.at("n_head"));
  c.n_embd = std::stoll(m.at("n_embd"));
  return c;
}

inline std::map<std::string, std::vector<float>> weights(SafetensorsFile& f,
                                                         const models::GPT& model) {
  std::map<std::string, std::vector<float>> w;
  for (auto& [name, p] : model.named_parameters()) w[name] = f.read_f32(name);
  return w;
}

// max |a - b| / max |b|: the error relative to the tensor's scale (infinite if a is not finite).
inline double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// Token ids `name` of the fixture as a (B, T) tensor on `d`; k >= 0 picks the k-th batch.
inline Tensor batch(SafetensorsFile& f, const std::string& name, const Shape& shape, int64_t k,
                    Device d) {
  std::vector<int32_t> all = f.read_i32(name);
  if (k >= 0) {
    const int64_t n = shape_numel(shape);
    all = std::vector<int32_t>(all.begin() + k * n, all.begin() + (k + 1) * n);
  }
  return Tensor::from_vector(all, shape, d);
}

// Logits, loss and every parameter's gradient of one batch (gpt_tiny_grads.safetensors).
inline void check_gradients(Device d, double tol) {
  auto f = SafetensorsFile::open(fixture("gpt_tiny_grads.safetensors"));
  models::GPT model(config_from(f), 1, d);
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt, -1, d), targets = batch(f, "targets", bt, -1, d);
  CHECK(max_rel(model.forward(inputs).to_vector<float>(), f.read_f32("logits")) < tol);
  Tensor loss = model.loss(inputs, targets);
  const double expected = f.read_f32("loss")[0];
  CHECK(std::abs(loss.item() - expected) / expected < tol);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == d);
    CHECK(max_rel(p.grad().to_vector<float>(), f.read_f32("grad." + name)) < tol);
  }
}

// A recorded training run: per-step losses (and, for AdamW, learning rates and clipped
// gradient norms) and the final weights.
inline void check_training_run(const std::string& file, bool adamw, Device d, double tol) {
  auto f = SafetensorsFile::open(fixture(file));
  const auto& meta = f.metadata();
  models::GPT model(config_from(f), 1, d);
  model.load_named(weights(f, model));
  const int64_t steps = std::stoll(meta.at("steps"));
  const Shape bt{std::stoll(meta.at("batch")), std::stoll(meta.at("seq"))};
  const std::vector<float> losses = f.read_f32("losses"), lrs = f.read_f32("lrs"),
                           norms = f.read_f32("grad_norms");
  std::vector<optim::ParamGroup> groups{{model.parameters(), std::stof(meta.at("weight_decay"))}};
  std::unique_ptr<optim::Optimizer> opt;
  optim::CosineSchedule sched{1e-2f, 1e-3f, 3, steps};
  if (adamw) {
    opt = std::make_unique<optim::AdamW>(
        groups, optim::AdamWOptions{1e-2f, std::stof(meta.at("beta1")), std::stof(meta.at("beta2")),
                                    std::stof(meta.at("eps"))});
  } else {
    opt = std::make_unique<optim::SGD>(
        groups, optim::SGDOptions{std::stof(meta.at("lr")), std::stof(meta.at("momentum")),
                                  std::stof(meta.at("dampening")), meta.at("nesterov") == "true"});
  }
  for (int64_t k = 0; k < steps; ++k) {
    INFO("step " << k);
    opt->zero_grad();
    Tensor loss = model.loss(batch(f, "inputs", bt, k, d), batch(f, "targets", bt, k, d));
    CHECK(std::abs(loss.item() - losses[k]) / losses[k] < tol);
    loss.backward();
    if (adamw) {
      opt->set_lr(sched.lr(k));
      CHECK(opt->lr() == Approx(lrs[k]).epsilon(1e-6));
      const double norm = optim::clip_grad_norm(model.parameters(), 1.0);
      CHECK(norm == Approx(norms[k]).epsilon(tol));
    }
    opt->step();
  }
  for (auto& [name, p] : model.named_parameters()) {
    INFO("final weight " << name);
    CHECK(max_rel(p.to_vector<float>(), f.read_f32("final." + name)) < tol);
  }
}

}  // namespace trident::reference_check
