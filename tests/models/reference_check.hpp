// The PyTorch reference checks of the models (fixtures from tests/reference/make_gpt_fixtures.py
// and make_llama_fixtures.py: float32 weights, the reference in float64), on any device, element
// by element: the CPU tests (tests/models/test_{gpt,llama}_reference.cpp) and the GPU tests
// (tests/gpu/test_{gpt,llama}_cuda.cpp) pass their tolerances. One template serves every model
// with the GPT's and the Llama's interface (constructor (config, seed, device), load_named,
// forward, loss). Needs TRIDENT_FIXTURE_DIR, Catch and tools/common/include on the include path.
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
#include "trident/models/llama.hpp"
#include "trident/tools/all_close.hpp"

namespace trident::reference_check {

inline std::string fixture(const std::string& name) {
  return std::string(TRIDENT_FIXTURE_DIR) + "/" + name;
}

inline models::GPTConfig gpt_config(const SafetensorsFile& f) {
  const auto& m = f.metadata();
  models::GPTConfig c;
  c.vocab_size = std::stoll(m.at("vocab_size"));
  c.block_size = std::stoll(m.at("block_size"));
  c.n_layer = std::stoll(m.at("n_layer"));
  c.n_head = std::stoll(m.at("n_head"));
  c.n_embd = std::stoll(m.at("n_embd"));
  return c;
}

inline models::LlamaConfig llama_config(const SafetensorsFile& f) {
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

// Every parameter the model holds, by name, from the fixture (full tensors: load_named cuts
// this rank's shard).
template <class Model>
std::map<std::string, std::vector<float>> weights(SafetensorsFile& f, const Model& model) {
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
// `scale` < 0: max|want|; a shard passes its full tensor's. Returns the worst element's ratio to
// its bound (<= 1 passes).
inline double expect_close(const std::string& what, const std::vector<float>& got,
                           const std::vector<float>& want, Tolerance tol, double scale = -1) {
  if (scale < 0) {
    scale = 0;
    for (float w : want) scale = std::max(scale, static_cast<double>(std::abs(w)));
  }
  const tools::Tolerance abs_tol{tol.rtol, tol.atol_of_max * scale};
  const tools::CloseResult r = tools::all_close(got, want, abs_tol);
  if (std::getenv("TRIDENT_REFERENCE_REPORT") != nullptr) {
    std::printf("reference %-30s worst %8.3g x bound; needs atol_of_max %.2e at rtol %.0e\n",
                what.c_str(), r.worst_ratio, scale > 0 ? r.atol_needed / scale : 0.0, tol.rtol);
  }
  INFO(what << ": " << tools::describe(r, abs_tol));
  CHECK(r.ok());
  return r.worst_ratio;
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

// A tensor's values on the host as f32.
inline std::vector<float> host(const Tensor& t) {
  return t.to_vector<float>();
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

// Logits, loss and every parameter's gradient of one batch (e.g. gpt_tiny_grads.safetensors),
// the model built by `config(file)`.
template <class Model, class ConfigFrom>
void check_gradients(const std::string& file, ConfigFrom config, Device d, const Tolerances& tol) {
  auto f = SafetensorsFile::open(fixture(file));
  Model model(config(f), 1, d);
  model.load_named(weights(f, model));
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor inputs = batch(f, "inputs", bt, -1, d), targets = batch(f, "targets", bt, -1, d);
  expect_close("logits", host(model.forward(inputs)), f.read_f32("logits"), tol.values);
  Tensor loss = model.loss(inputs, targets);
  expect_close("loss", {static_cast<float>(loss.item())}, f.read_f32("loss"), tol.scalars);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == d);
    expect_close("grad." + name, host(p.grad()), f.read_f32("grad." + name), tol.values);
  }
}

// A recorded training run: per-step losses (and, for AdamW, learning rates and clipped
// gradient norms) and the final weights.
template <class Model, class ConfigFrom>
void check_training_run(const std::string& file, ConfigFrom config, bool adamw, Device d,
                        const Tolerances& tol) {
  auto f = SafetensorsFile::open(fixture(file));
  const auto& meta = f.metadata();
  Model model(config(f), 1, d);
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
    expect_close("final." + name, host(p), f.read_f32("final." + name), tol.weights);
  }
}

}  // namespace trident::reference_check

namespace trident::reference_check {

// The fixtures of each model.
inline void check_gpt_gradients(Device d, const Tolerances& tol) {
  check_gradients<models::GPT>("gpt_tiny_grads.safetensors", gpt_config, d, tol);
}
inline void check_gpt_run(const std::string& file, bool adamw, Device d, const Tolerances& tol) {
  check_training_run<models::GPT>(file, gpt_config, adamw, d, tol);
}
inline void check_llama_gradients(Device d, const Tolerances& tol) {
  check_gradients<models::Llama>("llama_tiny_grads.safetensors", llama_config, d, tol);
}
inline void check_llama_adamw(Device d, const Tolerances& tol) {
  check_training_run<models::Llama>("llama_tiny_adamw.safetensors", llama_config, true, d, tol);
}

}  // namespace trident::reference_check
