// The PyTorch reference checks of the Llama (fixtures from tests/reference/make_llama_fixtures.py:
// float32 weights, reference computed in float64), on any device. Needs TRIDENT_FIXTURE_DIR and
// Catch.
//
// Tolerance, per element: |a - b| <= atol + rtol |b| with rtol = tol and atol = tol * max|b|
// over the tensor (a gradient's entries near zero are held to the tensor's scale, not to their
// own). Each check records the worst ratio |a - b| / (atol + rtol |b|) seen (<= 1 passes).
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/llama.hpp"

namespace trident::llama_check {

inline std::string fixture(const std::string& name) {
  return std::string(TRIDENT_FIXTURE_DIR) + "/" + name;
}

inline models::LlamaConfig config_from(const SafetensorsFile& f) {
  const auto& m = f.metadata();
  models::LlamaConfig c;
  c.vocab_size = std::stoll(m.at("vocab_size"));
  c.block_size = std::stoll(m.at("block_size"));
  c.n_layer = std::stoll(m.at("n_layer"));
  c.n_head = std::stoll(m.at("n_head"));
  c.n_kv_head = std::stoll(m.at("n_kv_head"));
  c.n_embd = std::stoll(m.at("n_embd"));
  c.ffn_hidden = std::stoll(m.at("ffn_hidden"));
  c.rope_theta = std::stod(m.at("rope_theta"));
  c.norm_eps = std::stod(m.at("norm_eps"));
  return c;
}

inline std::map<std::string, std::vector<float>> weights(SafetensorsFile& f,
                                                         const models::Llama& model) {
  std::map<std::string, std::vector<float>> w;
  for (auto& [name, p] : model.named_parameters()) w[name] = f.read_f32(name);
  return w;
}

// The worst per-element ratio |a - b| / (tol max|b| + tol |b|) (infinite if a is not finite).
inline double worst_ratio(const std::vector<float>& a, const std::vector<float>& b, double tol) {
  REQUIRE(a.size() == b.size());
  double scale = 0;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::abs(v)));
  const double atol = tol * std::max(scale, 1e-30);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double bound = atol + tol * std::abs(static_cast<double>(b[i]));
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / bound);
  }
  return worst;
}

inline Tensor batch(SafetensorsFile& f, const std::string& name, const Shape& shape, int64_t k,
                    Device d) {
  std::vector<int32_t> all = f.read_i32(name);
  if (k >= 0) {
    const int64_t n = shape_numel(shape);
    all = std::vector<int32_t>(all.begin() + k * n, all.begin() + (k + 1) * n);
  }
  return Tensor::from_vector(all, shape, d);
}

// Logits, loss and every parameter's gradient of one batch (llama_tiny_grads.safetensors).
// Returns the worst ratio over all of them.
inline double check_gradients(Device d, double tol) {
  auto f = SafetensorsFile::open(fixture("llama_tiny_grads.safetensors"));
  models::Llama model(config_from(f), 1, d);
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt, -1, d), targets = batch(f, "targets", bt, -1, d);
  double worst = worst_ratio(model.forward(inputs).to_vector<float>(), f.read_f32("logits"), tol);
  std::printf("llama reference: logits worst ratio %.3g\n", worst);
  CHECK(worst <= 1.0);
  Tensor loss = model.loss(inputs, targets);
  const double expected = f.read_f32("loss")[0];
  std::printf("llama reference: loss %.9g vs torch %.9g (rel %.3g)\n", loss.item(), expected,
              std::abs(loss.item() - expected) / expected);
  CHECK(std::abs(loss.item() - expected) <= tol * std::abs(expected));
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == d);
    const double r = worst_ratio(p.grad().to_vector<float>(), f.read_f32("grad." + name), tol);
    std::printf("llama reference: grad %-42s worst ratio %.3g\n", name.c_str(), r);
    CHECK(r <= 1.0);
    worst = std::max(worst, r);
  }
  return worst;
}

// 10 AdamW steps with clipping and warmup + cosine (llama_tiny_adamw.safetensors): per-step
// losses, learning rates and gradient norms, and the final weights. Returns the worst ratio of
// the final weights.
inline double check_adamw(Device d, double tol) {
  auto f = SafetensorsFile::open(fixture("llama_tiny_adamw.safetensors"));
  const auto& meta = f.metadata();
  models::Llama model(config_from(f), 1, d);
  model.load_named(weights(f, model));
  const int64_t steps = std::stoll(meta.at("steps"));
  const Shape bt{std::stoll(meta.at("batch")), std::stoll(meta.at("seq"))};
  const std::vector<float> losses = f.read_f32("losses"), lrs = f.read_f32("lrs"),
                           norms = f.read_f32("grad_norms");
  std::vector<optim::ParamGroup> groups{{model.parameters(), std::stof(meta.at("weight_decay"))}};
  optim::AdamW opt(
      groups, optim::AdamWOptions{1e-2f, std::stof(meta.at("beta1")), std::stof(meta.at("beta2")),
                                  std::stof(meta.at("eps"))});
  const optim::CosineSchedule sched{1e-2f, 1e-3f, 3, steps};
  double worst_loss = 0, worst_norm = 0;
  for (int64_t k = 0; k < steps; ++k) {
    INFO("step " << k);
    opt.zero_grad();
    Tensor loss = model.loss(batch(f, "inputs", bt, k, d), batch(f, "targets", bt, k, d));
    const double lrel = std::abs(loss.item() - losses[k]) / losses[k];
    worst_loss = std::max(worst_loss, lrel);
    CHECK(lrel <= tol);
    loss.backward();
    opt.set_lr(sched.lr(k));
    CHECK(opt.lr() == Approx(lrs[k]).epsilon(1e-6));
    const double norm = optim::clip_grad_norm(model.parameters(), 1.0);
    const double nrel = std::abs(norm - norms[k]) / norms[k];
    worst_norm = std::max(worst_norm, nrel);
    CHECK(nrel <= tol);
    opt.step();
  }
  double worst = 0;
  std::string worst_name;
  for (auto& [name, p] : model.named_parameters()) {
    INFO("final weight " << name);
    const double r = worst_ratio(p.to_vector<float>(), f.read_f32("final." + name), tol);
    CHECK(r <= 1.0);
    if (r > worst) worst = r, worst_name = name;
  }
  std::printf(
      "llama reference: adamw %lld steps: loss rel <= %.3g, grad norm rel <= %.3g, final "
      "weights worst ratio %.3g (%s)\n",
      static_cast<long long>(steps), worst_loss, worst_norm, worst, worst_name.c_str());
  return worst;
}

}  // namespace trident::llama_check
