// Hugging Face GPT-2 export (hf_gpt2.hpp): the fixtures written by
// tests/reference/make_hf_fixtures.py as save_pretrained writes GPT2LMHeadModel (no lm_head, no
// attn buffers, "transformer." names, Conv1D (in, out)) import and export to identical bytes;
// ours -> HF -> ours keeps every weight; a padded vocabulary exports only the real rows; and
// Trident's GPT on the imported weights gives Hugging Face GPT-2's logits.
#include <catch2/catch.hpp>
#include <cmath>

#include "io_test_util.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/gpt.hpp"
#include "trident/models/hf_gpt2.hpp"

using Catch::Matchers::Contains;
using trident::DType;
using trident::SafetensorsFile;
using trident::test::read_all;
using trident::test::ScratchDir;
namespace models = trident::models;

namespace {

const std::string kTiny = TRIDENT_FIXTURE_DIR "/hf_gpt2_tiny";
const std::string kTinyBf16 = TRIDENT_FIXTURE_DIR "/hf_gpt2_tiny_bf16";

std::map<std::string, std::vector<float>> parameters_of(const models::GPT& model) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, p] : model.named_parameters()) out[name] = p.to_vector<float>();
  return out;
}

}  // namespace

TEST_CASE("hf_gpt2: the save_pretrained-layout fixture imports and exports to its own bytes",
          "[io]") {
  const auto ck = models::load_hf_gpt2(kTiny);
  CHECK(ck.config.vocab_size == 67);
  CHECK(ck.config.block_size == 12);
  CHECK(ck.config.n_layer == 2);
  CHECK(ck.config.n_head == 2);
  CHECK(ck.config.n_embd == 16);
  ScratchDir dir("hf_export");
  models::save_hf_gpt2(dir.str(), ck);
  CHECK(read_all(dir.file("model.safetensors")) == read_all(kTiny + "/model.safetensors"));
  CHECK(read_all(dir.file("config.json")) == read_all(kTiny + "/config.json"));

  // What HF's GPT2LMHeadModel.save_pretrained leaves out: the tied head and the mask buffers.
  SafetensorsFile f = SafetensorsFile::open(dir.file("model.safetensors"));
  CHECK(f.names().size() == 2 + 12 * 2 + 2);
  CHECK_FALSE(f.has("lm_head.weight"));
  CHECK_FALSE(f.has("transformer.h.0.attn.bias"));
  CHECK(f.info("transformer.h.1.mlp.c_fc.weight").shape == std::vector<int64_t>{16, 64});
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
}

TEST_CASE("hf_gpt2: bf16 export matches the bf16 fixture byte for byte", "[io]") {
  // The bf16 fixture is the f32 fixture rounded by torch: our rounding of the f32 weights must
  // give the same bytes, and the bf16 file must import and export unchanged.
  ScratchDir dir("hf_export_bf16");
  models::save_hf_gpt2(dir.str() + "/from_f32", models::load_hf_gpt2(kTiny), DType::BF16);
  CHECK(read_all(dir.str() + "/from_f32/model.safetensors") ==
        read_all(kTinyBf16 + "/model.safetensors"));
  CHECK(read_all(dir.str() + "/from_f32/config.json") == read_all(kTinyBf16 + "/config.json"));
  models::save_hf_gpt2(dir.str() + "/again", models::load_hf_gpt2(kTinyBf16), DType::BF16);
  CHECK(read_all(dir.str() + "/again/model.safetensors") ==
        read_all(kTinyBf16 + "/model.safetensors"));
}

TEST_CASE("hf_gpt2: ours -> Hugging Face -> ours keeps every weight and the config", "[io]") {
  models::GPTConfig c;
  c.vocab_size = 53;
  c.block_size = 8;
  c.n_layer = 3;
  c.n_head = 4;
  c.n_embd = 24;
  c.ln_eps = 1e-6f;
  const models::GPT model(c, 7);
  models::HFGPT2Checkpoint ours{c, parameters_of(model), {}};
  ScratchDir dir("hf_ours");
  models::save_hf_gpt2(dir.str(), ours);
  const auto back = models::load_hf_gpt2(dir.str());
  CHECK(back.config.vocab_size == 53);
  CHECK(back.config.block_size == 8);
  CHECK(back.config.n_layer == 3);
  CHECK(back.config.n_head == 4);
  CHECK(back.config.n_embd == 24);
  CHECK(back.config.ln_eps == 1e-6f);
  REQUIRE(back.tensors.size() == ours.tensors.size());
  for (const auto& [name, values] : ours.tensors) {
    INFO(name);
    CHECK(back.tensors.at(name) == values);  // bitwise
  }
  // And exporting what came back gives the same file again.
  models::save_hf_gpt2(dir.str() + "/again", back);
  CHECK(read_all(dir.str() + "/again/model.safetensors") ==
        read_all(dir.file("model.safetensors")));
  CHECK(read_all(dir.str() + "/again/config.json") == read_all(dir.file("config.json")));
}

TEST_CASE("hf_gpt2: a padded vocabulary exports only the real vocab_size rows", "[io]") {
  auto ck = models::load_hf_gpt2(kTiny);
  ck.config.padded_vocab_size = 72;  // 5 padding rows, as --padded-vocab 72 builds
  std::vector<float>& wte = ck.tensors.at("wte.weight");
  wte.resize(72 * 16, 123.0f);
  ScratchDir dir("hf_padded");
  models::save_hf_gpt2(dir.str(), ck);
  CHECK(read_all(dir.file("model.safetensors")) == read_all(kTiny + "/model.safetensors"));
  CHECK(read_all(dir.file("config.json")) == read_all(kTiny + "/config.json"));

  wte.resize(68 * 16);  // neither vocab_size nor padded rows
  REQUIRE_THROWS_WITH(models::save_hf_gpt2(dir.str(), ck),
                      Contains("'wte.weight' has 1088 values; shape [67, 16] needs 1072"));
  wte.resize(67 * 16);
  ck.tensors.erase("ln_f.bias");
  REQUIRE_THROWS_WITH(models::hf_gpt2_tensors(ck), Contains("parameter 'ln_f.bias' is missing"));
}

TEST_CASE("hf_gpt2: Trident's GPT on the imported weights gives Hugging Face GPT-2's logits",
          "[io]") {
  // hf_gpt2_tiny_logits: GPT2LMHeadModel's forward (modeling_gpt2's eager path, written out in
  // make_hf_fixtures.py) on the fixture's HF tensors.
  SafetensorsFile ref =
      SafetensorsFile::open(TRIDENT_FIXTURE_DIR "/hf_gpt2_tiny_logits.safetensors");
  const auto ck = models::load_hf_gpt2(kTiny);
  models::GPT model(ck.config, 1);
  model.load_named(ck.tensors);
  const std::vector<int64_t> in_shape = ref.info("inputs").shape;
  REQUIRE(in_shape == std::vector<int64_t>{2, 12});
  trident::NoGradGuard no_grad;
  const trident::Tensor logits =
      model.forward(trident::Tensor::from_vector(ref.read_i32("inputs"), in_shape));
  REQUIRE(logits.shape() == std::vector<int64_t>{2, 12, 67});
  const std::vector<float> got = logits.to_vector<float>();
  const std::vector<float> want = ref.read_f32("logits");
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, double(std::fabs(got[i] - want[i])));
  INFO("max |logit difference| " << worst);
  CHECK(worst <= 1e-5);
}
