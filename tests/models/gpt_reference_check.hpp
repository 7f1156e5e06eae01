// The PyTorch reference checks of the GPT (fixtures from tests/reference/make_gpt_fixtures.py),
// on any device, element by element: the CPU tests (test_gpt_reference.cpp) and the GPU tests
// (tests/gpu/test_gpt_cuda.cpp) pass their tolerances. Needs TRIDENT_FIXTURE_DIR, Catch and
// tools/common/include on the include path.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/gpt.hpp"
#include "trident/tools/all_close.hpp"

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

// How close a value must be to the reference, per element: |got_i - want_i| <= atol + rtol |want_i|
// with atol = atol_of_max * max_j |want_j|. Float32 arithmetic errs by a few units of the
// magnitudes it sums, so an entry near zero in a tensor of larger ones carries an error on the
// tensor's scale, not its own: the absolute floor is a fraction of the tensor's largest entry.
struct Tolerance {
  double rtol = 1e-5;
  double atol_of_max = 0;
};

// Per element, as numpy.allclose (trident/tools/all_close.hpp; NaN never agrees); a failure
// names the worst element. With TRIDENT_REFERENCE_REPORT=1 every comparison prints its worst
// ratio and the smallest atol_of_max that passes at its rtol: how the tolerances were measured.
inline void expect_close(const std::string& what, const std::vector<float>& got,
                         const std::vector<float>& want, Tolerance tol) {
  double scale = 0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::abs(w)));
  const tools::Tolerance abs_tol{tol.rtol, tol.atol_of_max * scale};
  const tools::CloseResult r = tools::all_close(got, want, abs_tol);
  if (std::getenv("TRIDENT_REFERENCE_REPORT") != nullptr) {
    std::printf("reference %-30s worst %8.3g x bound; needs atol_of_max %.2e at rtol %.0e\n",
                what.c_str(), r.worst_ratio, scale > 0 ? r.atol_needed / scale : 0.0, tol.rtol);
  }
  INFO(what << ": " << tools::describe(r, abs_tol));
  CHECK(r.ok());
}

// The tolerances of one device: `values` for logits and gradients, `weights` for the weights
// after a recorded training run (AdamW divides every gradient entry by its own RMS, so a small
// entry's float32 error moves its weight by as much as a large one's), `scalars` for the loss
// and the gradient norm.
struct Tolerances {
  Tolerance values;
  Tolerance weights;
  Tolerance scalars;
};

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
inline void check_gradients(Device d, const Tolerances& tol) {
  auto f = SafetensorsFile::open(fixture("gpt_tiny_grads.safetensors"));
  models::GPT model(config_from(f), 1, d);
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt, -1, d), targets = batch(f, "targets", bt, -1, d);
  expect_close("logits", model.forward(inputs).to_vector<float>(), f.read_f32("logits"),
               tol.values);
  Tensor loss = model.loss(inputs, targets);
  expect_close("loss", {static_cast<float>(loss.item())}, f.read_f32("loss"), tol.scalars);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == d);
    expect_close("grad." + name, p.grad().to_vector<float>(), f.read_f32("grad." + name),
                 tol.values);
  }
}

// A recorded training run: per-step losses (and, for AdamW, learning rates and clipped
// gradient norms) and the final weights.
inline void check_training_run(const std::string& file, bool adamw, Device d,
                               const Tolerances& tol) {
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
    expect_close("loss step " + std::to_string(k), {static_cast<float>(loss.item())}, {losses[k]},
                 tol.scalars);
    loss.backward();
    if (adamw) {
      opt->set_lr(sched.lr(k));
      CHECK(opt->lr() == Approx(lrs[k]).epsilon(1e-6));
      const double norm = optim::clip_grad_norm(model.parameters(), 1.0);
      expect_close("grad norm step " + std::to_string(k), {static_cast<float>(norm)}, {norms[k]},
                   tol.scalars);
    }
    opt->step();
  }
  for (auto& [name, p] : model.named_parameters()) {
    INFO("final weight " << name);
    expect_close("final." + name, p.to_vector<float>(), f.read_f32("final." + name), tol.weights);
  }
}

}  // namespace trident::reference_check
