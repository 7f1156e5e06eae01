// Hugging Face Llama import and export (hf_llama.hpp) against the fixture directory written by
// tests/reference/make_llama_fixtures.py (config.json with LlamaConfig's keys, model.safetensors
// with HF's names, the weights of llama_tiny_grads.safetensors).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "reference_check.hpp"
#include "trident/models/hf_llama.hpp"
#include "trident/models/llama.hpp"

using namespace trident;
namespace rc = trident::reference_check;
namespace fs = std::filesystem;

namespace {
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("trident_hf_llama_" + name);
  fs::remove_all(d);
  return d;
}
}  // namespace

TEST_CASE("HF Llama import: config, every tensor by name, and the model's logits",
          "[models][llama][hf]") {
  const models::HFLlamaCheckpoint ck = models::load_hf_llama(rc::fixture("hf_llama_tiny"));
  auto f = SafetensorsFile::open(rc::fixture("llama_tiny_grads.safetensors"));
  const models::LlamaConfig want = rc::llama_config(f);
  CHECK(ck.config.vocab_size == want.vocab_size);
  CHECK(ck.config.block_size == want.block_size);
  CHECK(ck.config.n_layer == want.n_layer);
  CHECK(ck.config.n_head == want.n_head);
  CHECK(ck.config.n_kv_head == want.n_kv_head);
  CHECK(ck.config.n_embd == want.n_embd);
  CHECK(ck.config.ffn_hidden == want.ffn_hidden);
  CHECK(ck.config.rope_theta == want.rope_theta);
  CHECK(ck.config.norm_eps == want.norm_eps);
  models::Llama model(ck.config, 1);
  REQUIRE(ck.tensors.size() == model.named_parameters().size());
  for (const auto& [name, p] : model.named_parameters()) {
    INFO(name);
    REQUIRE(ck.tensors.count(name) == 1);
    CHECK(ck.tensors.at(name) == f.read_f32(name));  // bit for bit
  }
  model.load_named(ck.tensors);
  const Shape bt{std::stoll(f.metadata().at("batch")), std::stoll(f.metadata().at("seq"))};
  const Tensor ids = rc::batch(f, "inputs", bt, -1, Device::cpu());
  // As test_llama_reference.cpp's logits.
  rc::expect_close("logits", model.forward(ids).to_vector<float>(), f.read_f32("logits"),
                   {1e-5, 1e-6});
}

TEST_CASE("HF Llama export round trip is byte for byte", "[models][llama][hf]") {
  const std::string src = rc::fixture("hf_llama_tiny");
  const models::HFLlamaCheckpoint ck = models::load_hf_llama(src);
  const fs::path a = fresh_dir("a"), b = fresh_dir("b");
  models::save_hf_llama(a.string(), ck);
  // config.json exactly as the fixture script's (json.dump(indent=2, sort_keys=True)).
  CHECK(file_bytes((a / "config.json").string()) == file_bytes(src + "/config.json"));
  const models::HFLlamaCheckpoint back = models::load_hf_llama(a.string());
  CHECK(back.tensors == ck.tensors);
  models::save_hf_llama(b.string(), back);
  CHECK(file_bytes((b / "model.safetensors").string()) ==
        file_bytes((a / "model.safetensors").string()));
  CHECK(file_bytes((b / "config.json").string()) == file_bytes((a / "config.json").string()));
  // The export names are Hugging Face's.
  auto out = SafetensorsFile::open((a / "model.safetensors").string());
  CHECK(out.has("model.embed_tokens.weight"));
  CHECK(out.has("model.layers.1.self_attn.k_proj.weight"));
  CHECK(out.has("model.layers.0.mlp.gate_proj.weight"));
  CHECK(out.has("model.norm.weight"));
  CHECK(out.has("lm_head.weight"));
  CHECK(out.info("model.layers.0.self_attn.k_proj.weight").shape == std::vector<int64_t>{16, 32});

  // bf16: values rounded to bf16, config says so, and a second round trip is exact.
  const fs::path c = fresh_dir("c"), d = fresh_dir("d");
  models::save_hf_llama(c.string(), ck, DType::BF16);
  const models::HFLlamaCheckpoint half = models::load_hf_llama(c.string());
  CHECK(models::read_hf_config((c / "config.json").string()).at("torch_dtype") == "bfloat16");
  const std::vector<float>& w = ck.tensors.at("lm_head.weight");
  const std::vector<float>& h = half.tensors.at("lm_head.weight");
  REQUIRE(w.size() == h.size());
  for (size_t i = 0; i < w.size(); ++i) CHECK(std::abs(h[i] - w[i]) <= std::abs(w[i]) / 256);
  models::save_hf_llama(d.string(), half, DType::BF16);
  CHECK(file_bytes((d / "model.safetensors").string()) ==
        file_bytes((c / "model.safetensors").string()));
  for (const fs::path& p : {a, b, c, d}) fs::remove_all(p);
}

TEST_CASE("HF Llama configs Trident cannot reproduce are refused, naming the key",
          "[models][llama][hf]") {
  nlohmann::json j = models::hf_llama_config(models::LlamaConfig::preset("llama-tiny"));
  CHECK(models::llama_config_from_hf(j, "c.json").n_kv_head == 2);
  nlohmann::json scaled = j;
  scaled["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  CHECK_THROWS_WITH(models::llama_config_from_hf(scaled, "c.json"),
                    Catch::Contains("c.json: rope_scaling"));
  nlohmann::json tied = j;
  tied["tie_word_embeddings"] = true;
  CHECK_THROWS_WITH(models::llama_config_from_hf(tied, "c.json"),
                    Catch::Contains("tie_word_embeddings"));
  nlohmann::json biased = j;
  biased["attention_bias"] = true;
  CHECK_THROWS_WITH(models::llama_config_from_hf(biased, "c.json"),
                    Catch::Contains("attention_bias"));
  nlohmann::json no_width = j;
  no_width.erase("hidden_size");
  CHECK_THROWS_WITH(models::llama_config_from_hf(no_width, "c.json"),
                    Catch::Contains("no 'hidden_size'"));
  // Llama 3 8B's config.json keys give the 8B preset's shape.
  const models::LlamaConfig l8 = models::llama_config_from_hf(
      models::hf_llama_config(models::LlamaConfig::preset("llama3-8b")), "8b.json");
  CHECK(l8.num_parameters() == 8030261248LL);
}
