// The whole GPT on the GPU: loss and every gradient against the same model on the CPU, the
// PyTorch reference fixtures (tests/models/test_gpt_reference.cpp) on cuda, and a training loop
// that stops calling cudaMalloc once warmed up.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>

#include "gpu_test_util.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/safetensors.hpp"
#include "trident/models/gpt.hpp"

namespace trident::gpu_test {
namespace {

using models::GPT;
using models::GPTConfig;

GPTConfig tiny(float dropout) {
  GPTConfig c;
  c.vocab_size = 97;
  c.block_size = 48;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.dropout = dropout;
  return c;
}

std::vector<int32_t> tokens(size_t n, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = pick(rng);
  return v;
}

std::string fixture(const std::string& name) {
  return std::string(TRIDENT_FIXTURE_DIR) + "/" + name;
}

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

std::map<std::string, std::vector<float>> weights(SafetensorsFile& f, const GPT& model) {
  std::map<std::string, std::vector<float>> w;
  for (auto& [name, p] : model.named_parameters()) w[name] = f.read_f32(name);
  return w;
}

// max |a - b| / max |b|, as the CPU reference test measures.
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

Tensor batch(SafetensorsFile& f, const std::string& name, const Shape& shape, int64_t k,
             Device d) {
  std::vector<int32_t> all = f.read_i32(name);
  if (k >= 0) {
    const int64_t n = shape_numel(shape);
    all = std::vector<int32_t>(all.begin() + k * n, all.begin() + (k + 1) * n);
  }
  return Tensor::from_vector(all, shape, d);
}

}  // namespace

TEST_CASE("GPT loss and every gradient on cuda match the CPU", "[gpt]") {
  for (float dropout : {0.0f, 0.1f}) {
    const uint64_t seed = fresh_seed();
    INFO("dropout " << dropout << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const GPTConfig cfg = tiny(dropout);
    GPT cpu(cfg, 7), cuda(cfg, 7, gpu());
    const Shape bt{3, 40};
    const auto x = tokens(120, cfg.vocab_size, rng), y = tokens(120, cfg.vocab_size, rng);
    Tensor loss_c = cpu.loss(Tensor::from_vector(x, bt), Tensor::from_vector(y, bt));
    Tensor loss_g = cuda.loss(Tensor::from_vector(x, bt, gpu()), Tensor::from_vector(y, bt, gpu()));
    CHECK(loss_g.device() == gpu());
    const double lc = loss_c.item(), lg = loss_g.item();
    CHECK(std::abs(lg - lc) / lc < 1e-4);
    loss_c.backward();
    loss_g.backward();
    const auto pc = cpu.named_parameters(), pg = cuda.named_parameters();
    REQUIRE(pc.size() == pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      INFO("gradient of " << pc[i].first);
      REQUIRE(pg[i].first == pc[i].first);
      REQUIRE(pg[i].second.grad().defined());
      CHECK(pg[i].second.grad().device() == gpu());
      CHECK(rel_error(pg[i].second.grad().to_vector<float>(),
                      pc[i].second.grad().to_vector<float>()) < 1e-4);
    }
  }
}

TEST_CASE("GPT training on cuda stops calling cudaMalloc after warm-up steps", "[gpt]") {
  std::mt19937_64 rng(fresh_seed());
  const GPTConfig cfg = tiny(0.0f);
  GPT model(cfg, 3, gpu());
  std::vector<optim::ParamGroup> groups{{model.parameters(), 0.1f}};
  optim::AdamW opt(groups, optim::AdamWOptions{1e-3f});
  const Shape bt{4, 32};
  const auto x = tokens(128, cfg.vocab_size, rng), y = tokens(128, cfg.vocab_size, rng);
  const Tensor xg = Tensor::from_vector(x, bt, gpu()), yg = Tensor::from_vector(y, bt, gpu());
  Allocator& alloc = allocator_for(gpu());
  double first = 0, last = 0;
  uint64_t allocs_after_warmup = 0;
  for (int step = 0; step < 8; ++step) {
    opt.zero_grad();
    Tensor loss = model.loss(xg, yg);
    loss.backward();
    optim::clip_grad_norm(model.parameters(), 1.0);
    opt.step();
    const double l = loss.item();
    if (step == 0) first = l;
    last = l;
    if (step == 2) allocs_after_warmup = alloc.stats().system_allocs;
  }
  CHECK(alloc.stats().system_allocs == allocs_after_warmup);
  CHECK(alloc.stats().peak_bytes > 0);
  CHECK(last < first);  // the same batch eight times: the loss must fall
}

TEST_CASE("GPT on cuda: loss, logits and every gradient match PyTorch", "[reference]") {
  auto f = SafetensorsFile::open(fixture("gpt_tiny_grads.safetensors"));
  const GPTConfig cfg = config_from(f);
  GPT model(cfg, 1, gpu());
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt, -1, gpu()), targets = batch(f, "targets", bt, -1, gpu());
  CHECK(max_rel(model.forward(inputs).to_vector<float>(), f.read_f32("logits")) < 1e-4);
  Tensor loss = model.loss(inputs, targets);
  const double expected = f.read_f32("loss")[0];
  CHECK(std::abs(loss.item() - expected) / expected < 1e-4);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(max_rel(p.grad().to_vector<float>(), f.read_f32("grad." + name)) < 1e-4);
  }
}

namespace {
void check_training_run(const std::string& file, bool adamw) {
  auto f = SafetensorsFile::open(fixture(file));
  const auto& meta = f.metadata();
  const GPTConfig cfg = config_from(f);
  GPT model(cfg, 1, gpu());
  model.load_named(weights(f, model));
  const int64_t steps = std::stoll(meta.at("steps"));
  const Shape bt{std::stoll(meta.at("batch")), std::stoll(meta.at("seq"))};
  const std::vector<float> losses = f.read_f32("losses"), norms = f.read_f32("grad_norms");
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
    Tensor loss = model.loss(batch(f, "inputs", bt, k, gpu()), batch(f, "targets", bt, k, gpu()));
    CHECK(std::abs(loss.item() - losses[k]) / losses[k] < 1e-4);
    loss.backward();
    if (adamw) {
      opt->set_lr(sched.lr(k));
      const double norm = optim::clip_grad_norm(model.parameters(), 1.0);
      CHECK(norm == Approx(norms[k]).epsilon(1e-4));
    }
    opt->step();
  }
  for (auto& [name, p] : model.named_parameters()) {
    INFO("final weight " << name);
    CHECK(max_rel(p.to_vector<float>(), f.read_f32("final." + name)) < 1e-4);
  }
}
}  // namespace

TEST_CASE("10 SGD steps on cuda match torch.optim.SGD", "[reference]") {
  check_training_run("gpt_tiny_sgd.safetensors", false);
}

TEST_CASE("10 AdamW steps with clipping on cuda match torch.optim.AdamW", "[reference]") {
  check_training_run("gpt_tiny_adamw.safetensors", true);
}

}  // namespace trident::gpu_test
