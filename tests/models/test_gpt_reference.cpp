// The spec: Trident's GPT against PyTorch fixtures (tests/reference/make_gpt_fixtures.py).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "trident/core/optim/optimizer.hpp"
#include "trident/core/safetensors.hpp"
#include "trident/models/gpt.hpp"

using namespace trident;
using trident::models::GPT;
using trident::models::GPTConfig;

namespace {

std::string fixture(const std::string& name) { return std::string(TRIDENT_FIXTURE_DIR) + "/" + name; }

GPTConfig config_from(const SafetensorsFile& f) {
  const auto& m = f.metadata();
  GPTConfig c;
  c.vocab_size = std::stoll(m.at("vocab_size"));
  c.block_size = std::stoll(m.at("block_size"));
  c.n_layer = std::stoll(m.at("n_layer"));
  c.n_head = std::stoll(m.at("n_head"));
  c.n_embd = std::stoll(m.at("n_embd"));
  return c;
}

std::map<std::string, std::vector<float>> weights(SafetensorsFile& f, const GPT& model,
                                                  const std::string& prefix = "") {
  std::map<std::string, std::vector<float>> w;
  for (auto& [name, p] : model.named_parameters()) w[name] = f.read_f32(prefix + name);
  return w;
}

// max |a - b| / max |b|: the error relative to the tensor's scale.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

Tensor batch(SafetensorsFile& f, const std::string& name, const Shape& shape, int64_t k = -1) {
  std::vector<int32_t> all = f.read_i32(name);
  if (k >= 0) {
    const int64_t n = shape_numel(shape);
    all = std::vector<int32_t>(all.begin() + k * n, all.begin() + (k + 1) * n);
  }
  return Tensor::from_vector(all, shape);
}

}  // namespace

TEST_CASE("GPT loss, logits and every gradient match PyTorch", "[models][reference]") {
  auto f = SafetensorsFile::open(fixture("gpt_tiny_grads.safetensors"));
  const GPTConfig cfg = config_from(f);
  GPT model(cfg, 1);
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt), targets = batch(f, "targets", bt);

  const Tensor logits = model.forward(inputs);
  CHECK(rel_error(logits.to_vector<float>(), f.read_f32("logits")) < 1e-5);
  Tensor loss = model.loss(inputs, targets);
  const double expected = f.read_f32("loss")[0];
  CHECK(std::abs(loss.item() - expected) / expected < 1e-5);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(rel_error(p.grad().to_vector<float>(), f.read_f32("grad." + name)) < 1e-5);
  }
}

namespace {
void check_training_run(const std::string& file, bool adamw) {
  auto f = SafetensorsFile::open(fixture(file));
  const auto& meta = f.metadata();
  const GPTConfig cfg = config_from(f);
  GPT model(cfg, 1);
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
    Tensor loss = model.loss(batch(f, "inputs", bt, k), batch(f, "targets", bt, k));
    CHECK(std::abs(loss.item() - losses[k]) / losses[k] < 1e-5);
    loss.backward();
    if (adamw) {
      opt->set_lr(sched.lr(k));
      CHECK(opt->lr() == Approx(lrs[k]).epsilon(1e-6));
      const double norm = optim::clip_grad_norm(model.parameters(), 1.0);
      CHECK(norm == Approx(norms[k]).epsilon(1e-5));
    }
    opt->step();
  }
  for (auto& [name, p] : model.named_parameters()) {
    INFO("final weight " << name);
    CHECK(rel_error(p.to_vector<float>(), f.read_f32("final." + name)) < 1e-5);
  }
}
}  // namespace

TEST_CASE("10 SGD steps (momentum, Nesterov, weight decay) match torch.optim.SGD",
          "[models][reference][optim]") {
  check_training_run("gpt_tiny_sgd.safetensors", false);
}

TEST_CASE("10 AdamW steps with clipping and warmup+cosine match torch.optim.AdamW",
          "[models][reference][optim]") {
  check_training_run("gpt_tiny_adamw.safetensors", true);
}
