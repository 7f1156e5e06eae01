// Llama configuration, presets, parameter layout and layout errors (the numerics are checked
// against PyTorch in test_llama_reference.cpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "trident/core/ops.hpp"
#include "trident/models/llama.hpp"

using namespace trident;
using models::Llama;
using models::LlamaConfig;

TEST_CASE("Llama presets: llama-tiny's sizes and Llama 3 8B's shape and parameter count",
          "[models][llama]") {
  const LlamaConfig tiny = LlamaConfig::preset("llama-tiny");
  CHECK(tiny.vocab_size == 256);
  CHECK(tiny.n_embd == 64);
  CHECK(tiny.n_head == 4);
  CHECK(tiny.n_kv_head == 2);
  CHECK(tiny.ffn_hidden == 176);
  CHECK(tiny.n_layer == 4);
  const LlamaConfig l8 = LlamaConfig::preset("llama3-8b");
  CHECK(l8.vocab_size == 128256);
  CHECK(l8.n_embd == 4096);
  CHECK(l8.n_layer == 32);
  CHECK(l8.n_head == 32);
  CHECK(l8.n_kv_head == 8);
  CHECK(l8.ffn_hidden == 14336);
  CHECK(l8.rope_theta == 500000.0);
  CHECK(l8.norm_eps == 1e-5);
  CHECK(l8.num_parameters() == 8030261248LL);  // Meta-Llama-3-8B: 8.03 B
  CHECK(LlamaConfig::preset("llama3-70b").num_parameters() == 70553706496LL);
  for (const auto& name : LlamaConfig::preset_names()) {
    INFO(name);
    CHECK_NOTHROW(LlamaConfig::preset(name).validate());
    CHECK(LlamaConfig::is_preset(name));
  }
  CHECK_THROWS_WITH(
      LlamaConfig::preset("llama-huge"),
      Catch::Contains("unknown Llama preset 'llama-huge'") && Catch::Contains("llama-tiny"));
}

TEST_CASE("Llama config errors name the sizes", "[models][llama]") {
  LlamaConfig c = LlamaConfig::preset("llama-tiny");
  c.n_kv_head = 3;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("3 key/value heads do not divide 4"));
  c = LlamaConfig::preset("llama-tiny");
  CHECK_NOTHROW(c.validate_tp(2));
  // 2 kv heads cannot be split over 4 tensor-parallel ranks, although 4 q heads could.
  CHECK_THROWS_WITH(c.validate_tp(4),
                    Catch::Contains("--tp 4 does not divide the 2 key/value heads"));
  c.n_embd = 60;  // head size 15
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("even head size"));
}

TEST_CASE("Llama parameters: Hugging Face names, shapes, init", "[models][llama]") {
  LlamaConfig c = LlamaConfig::preset("llama-tiny");
  c.n_layer = 2;
  Llama model(c, 7);
  const auto params = model.named_parameters();
  REQUIRE(params.size() == 1 + 2 * 9 + 2);
  CHECK(params.front().first == "embed_tokens.weight");
  CHECK(params.front().second.shape() == Shape{256, 64});
  CHECK(model.parameter("layers.1.self_attn.q_proj.weight").shape() == Shape{64, 64});
  CHECK(model.parameter("layers.1.self_attn.k_proj.weight").shape() == Shape{32, 64});
  CHECK(model.parameter("layers.1.self_attn.v_proj.weight").shape() == Shape{32, 64});
  CHECK(model.parameter("layers.1.self_attn.o_proj.weight").shape() == Shape{64, 64});
  CHECK(model.parameter("layers.0.mlp.gate_proj.weight").shape() == Shape{176, 64});
  CHECK(model.parameter("layers.0.mlp.up_proj.weight").shape() == Shape{176, 64});
  CHECK(model.parameter("layers.0.mlp.down_proj.weight").shape() == Shape{64, 176});
  CHECK(params.back().first == "lm_head.weight");
  CHECK(params.back().second.shape() == Shape{256, 64});
  CHECK(models::llama_hf_name("layers.0.mlp.up_proj.weight") ==
        "model.layers.0.mlp.up_proj.weight");
  CHECK(models::llama_hf_name("lm_head.weight") == "lm_head.weight");
  int64_t total = 0;
  for (const auto& [name, p] : params) total += p.numel();
  CHECK(total == c.num_parameters());
  // RMSNorm weights start at one, matrices N(0, 0.02) from a stream of (seed, name).
  for (float v : model.parameter("norm.weight").to_vector<float>()) CHECK(v == 1.0f);
  const auto w = model.parameter("lm_head.weight").to_vector<float>();
  double sq = 0;
  for (float v : w) sq += static_cast<double>(v) * v;
  CHECK(std::sqrt(sq / static_cast<double>(w.size())) == Approx(0.02).epsilon(0.05));
  Llama again(c, 7);
  CHECK(again.parameter("layers.1.self_attn.k_proj.weight").to_vector<float>() ==
        model.parameter("layers.1.self_attn.k_proj.weight").to_vector<float>());
  CHECK(model.parameter("lm_head.weight").to_vector<float>() !=
        model.parameter("embed_tokens.weight").to_vector<float>());  // untied
}

TEST_CASE("Llama at init: logits (B, T, V), loss near ln V, a gradient for every parameter",
          "[models][llama]") {
  LlamaConfig c = LlamaConfig::preset("llama-tiny");
  Llama model(c, 3);
  std::vector<int32_t> ids(2 * 9), targets(2 * 9);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 37) % 256);
    targets[i] = static_cast<int32_t>((i * 91 + 5) % 256);
  }
  const Tensor x = Tensor::from_vector(ids, {2, 9}), y = Tensor::from_vector(targets, {2, 9});
  CHECK(model.forward(x).shape() == Shape{2, 9, 256});
  Tensor loss = model.loss(x, y);
  CHECK(loss.item() == Approx(std::log(256.0)).epsilon(0.02));
  loss.backward();
  for (const auto& [name, p] : model.named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    double sq = 0;
    for (float v : p.grad().to_vector<float>()) sq += static_cast<double>(v) * v;
    CHECK(sq > 0);
  }
  std::vector<int32_t> long_ids(65, 1);
  CHECK_THROWS_WITH(model.forward(Tensor::from_vector(long_ids, {1, 65})),
                    Catch::Contains("longer than the model's context of 64"));
}

TEST_CASE("Llama in bf16 (mixed precision): f32 master gradients that follow the f32 model",
          "[models][llama]") {
  LlamaConfig c = LlamaConfig::preset("llama-tiny");
  c.n_layer = 2;
  Llama f32(c, 5), bf16(c, 5);
  bf16.set_compute_dtype(DType::BF16);
  std::vector<int32_t> ids(2 * 12), targets(2 * 12);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>((i * 53 + 3) % 256);
    targets[i] = static_cast<int32_t>((i * 29 + 11) % 256);
  }
  const Tensor x = Tensor::from_vector(ids, {2, 12}), y = Tensor::from_vector(targets, {2, 12});
  Tensor l32 = f32.loss(x, y), l16 = bf16.loss(x, y);
  CHECK(l16.dtype() == DType::F32);
  CHECK(std::abs(l16.item() - l32.item()) <= 2e-3 * l32.item());  // seen: 6e-6 relative
  l32.backward();
  l16.backward();
  const auto p32 = f32.named_parameters(), p16 = bf16.named_parameters();
  for (size_t i = 0; i < p32.size(); ++i) {
    INFO(p32[i].first);
    REQUIRE(p16[i].second.grad().defined());
    CHECK(p16[i].second.grad().dtype() == DType::F32);
    const auto a = p16[i].second.grad().to_vector<float>(),
               b = p32[i].second.grad().to_vector<float>();
    double diff = 0, scale = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      diff = std::max(diff, static_cast<double>(std::abs(a[k] - b[k])));
      scale = std::max(scale, static_cast<double>(std::abs(b[k])));
    }
    // bf16 keeps 8 bits of mantissa (0.4% a rounding); seen: at most 1.1% of the scale.
    CHECK(diff <= 0.05 * scale);
  }
}
