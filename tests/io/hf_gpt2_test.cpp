// Hugging Face GPT-2 loading: the fixture in HF layout (Conv1D (in,out) weights, "transformer."
// prefix, attn.bias buffers, tied lm_head) loads into exactly the parameters the PyTorch
// reference used, with and without the prefix; broken checkpoints fail with clear messages.
#include "trident/models/hf_gpt2.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>

#include "io_test_util.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"

using Catch::Matchers::Contains;
using trident::SafetensorsFile;
using trident::SafetensorsWriter;
using trident::test::ScratchDir;

namespace {

const std::string kHFTiny = TRIDENT_FIXTURE_DIR "/hf_tiny";

// Copies hf_tiny into `dst`, passing every tensor through `edit`, which may rename it (change
// `name`), replace its shape/bytes, or drop it (return false). config.json is copied as is.
using TensorEdit = std::function<bool(std::string& name, trident::SafetensorsTensorInfo& info,
                                      std::vector<uint8_t>& bytes)>;
void write_variant(const std::string& dst, const TensorEdit& edit) {
  std::filesystem::create_directories(dst);
  std::filesystem::copy_file(kHFTiny + "/config.json", dst + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  SafetensorsFile src = SafetensorsFile::open(kHFTiny + "/model.safetensors");
  SafetensorsWriter w;
  for (const std::string& name : src.names()) {
    std::string new_name = name;
    trident::SafetensorsTensorInfo info = src.info(name);
    std::vector<uint8_t> bytes = src.read_bytes(name);
    if (edit(new_name, info, bytes)) w.add(new_name, info.dtype, info.shape, bytes.data());
  }
  w.write(dst + "/model.safetensors");
}

bool strip_prefix(std::string& name) {
  const std::string prefix = "transformer.";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return name != "lm_head.weight";  // GPT2Model checkpoints have no head
}

void check_equals_reference(const trident::models::HFGPT2Checkpoint& ck) {
  SafetensorsFile ref = SafetensorsFile::open(TRIDENT_FIXTURE_DIR "/gpt_tiny_grads.safetensors");
  const auto expected = trident::models::gpt_parameter_shapes(ck.config);
  REQUIRE(ck.tensors.size() == expected.size());
  REQUIRE(ck.shapes.size() == expected.size());
  for (const auto& [name, shape] : expected) {
    INFO(name);
    REQUIRE(ref.has(name));
    CHECK(ref.info(name).shape == shape);
    CHECK(ck.shapes.at(name) == shape);
    CHECK(ck.tensors.at(name) == ref.read_f32(name));  // bitwise: transposes and renames only
  }
}

}  // namespace

TEST_CASE("gpt_parameter_shapes lists every parameter in gpt_config.hpp", "[io]") {
  trident::models::GPTConfig c;
  c.vocab_size = 67;
  c.block_size = 16;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  const auto shapes = trident::models::gpt_parameter_shapes(c);
  CHECK(shapes.size() == 2 + 12 * 2 + 2);
  int64_t total = 0;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    total += n;
  }
  CHECK(total == c.num_parameters());
  CHECK(shapes.front().first == "wte.weight");
  CHECK(shapes[4].first == "blocks.0.attn.qkv.weight");
  CHECK(shapes[4].second == std::vector<int64_t>{96, 32});
}

TEST_CASE("hf_gpt2 loads the HF-layout fixture into the reference parameters", "[io]") {
  const auto ck = trident::models::load_hf_gpt2(kHFTiny);
  CHECK(ck.config.vocab_size == 67);
  CHECK(ck.config.block_size == 16);
  CHECK(ck.config.n_layer == 2);
  CHECK(ck.config.n_head == 4);
  CHECK(ck.config.n_embd == 32);
  CHECK(ck.config.ln_eps == 1e-5f);
  CHECK(ck.config.dropout == 0.0f);
  check_equals_reference(ck);
}

TEST_CASE("hf_gpt2 loads a checkpoint without the transformer. prefix", "[io]") {
  ScratchDir dir("hf_noprefix");
  write_variant(dir.str(), [](std::string& name, auto&, auto&) { return strip_prefix(name); });
  SafetensorsFile f = SafetensorsFile::open(dir.str() + "/model.safetensors");
  REQUIRE(f.has("h.0.attn.c_attn.weight"));
  REQUIRE_FALSE(f.has("transformer.wte.weight"));
  check_equals_reference(trident::models::load_hf_gpt2(dir.str()));
}

TEST_CASE("hf_gpt2 errors name the tensor and the shapes", "[io]") {
  ScratchDir dir("hf_bad");
  const std::string d = dir.str();

  SECTION("missing tensor") {
    write_variant(
        d, [](std::string& name, auto&, auto&) { return name != "transformer.h.1.mlp.c_fc.bias"; });
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("model.safetensors: missing tensor "
                                 "'transformer.h.1.mlp.c_fc.bias'") &&
                            Contains("blocks.1.mlp.fc.bias") && Contains("[128]"));
  }
  SECTION("wrong shape: a Conv1D weight stored (out, in)") {
    write_variant(d, [](std::string& name, trident::SafetensorsTensorInfo& info, auto&) {
      if (name == "transformer.h.0.attn.c_attn.weight") info.shape = {96, 32};
      return true;
    });
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("'transformer.h.0.attn.c_attn.weight' has shape [96, 32], "
                                 "expected [32, 96]") &&
                            Contains("n_embd 32"));
  }
  SECTION("a renamed tensor is reported as missing") {
    write_variant(d, [](std::string& name, auto&, auto&) {
      if (name == "transformer.h.1.ln_1.weight") name = "transformer.h.2.ln_1.weight";
      return true;
    });
    // h.1.ln_1.weight is now missing: that is reported first.
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("missing tensor 'transformer.h.1.ln_1.weight'"));
  }
  SECTION("an extra layer beyond n_layer") {
    SafetensorsFile src = SafetensorsFile::open(kHFTiny + "/model.safetensors");
    const std::vector<float> ln = src.read_f32("transformer.h.1.ln_1.weight");
    write_variant(d, [](auto&, auto&, auto&) { return true; });
    SafetensorsFile copy = SafetensorsFile::open(d + "/model.safetensors");
    SafetensorsWriter w;
    for (const std::string& name : copy.names()) {
      w.add(name, copy.info(name).dtype, copy.info(name).shape, copy.read_bytes(name).data());
    }
    w.add_f32("transformer.h.2.ln_1.weight", {32}, ln);
    w.write(d + "/model.safetensors");
    REQUIRE_THROWS_WITH(
        trident::models::load_hf_gpt2(d),
        Contains("unexpected tensor 'transformer.h.2.ln_1.weight'") && Contains("n_layer 2"));
  }
  SECTION("an untied lm_head") {
    write_variant(d, [](std::string& name, auto&, std::vector<uint8_t>& bytes) {
      if (name == "lm_head.weight") bytes[0] ^= 0x01;
      return true;
    });
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("lm_head.weight differs from wte.weight"));
  }
  SECTION("not a GPT-2 checkpoint") {
    write_variant(d,
                  [](std::string& name, auto&, auto&) { return name != "transformer.wte.weight"; });
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d), Contains("missing tensor 'wte.weight'"));
  }
}

TEST_CASE("hf_gpt2 config.json errors", "[io]") {
  ScratchDir dir("hf_config");
  const std::string d = dir.str();
  auto write_config = [&](const std::string& text) {
    trident::test::write_bytes(d + "/config.json", text);
  };
  const std::string good =
      R"({"n_embd": 32, "n_layer": 2, "n_head": 4, "n_ctx": 16, "vocab_size": 67})";

  SECTION("missing config.json") {
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d), Contains("config.json: cannot open"));
  }
  SECTION("invalid JSON") {
    write_config("{\"n_embd\": 32,");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d), Contains("config.json: not valid JSON"));
  }
  SECTION("missing field") {
    write_config(R"({"n_layer": 2, "n_head": 4, "n_positions": 16, "vocab_size": 67})");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("config.json: missing \"n_embd\""));
  }
  SECTION("bad field") {
    write_config(R"({"n_embd": "32", "n_layer": 2, "n_head": 4, "n_positions": 16,
                     "vocab_size": 67})");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("\"n_embd\" must be a positive integer"));
  }
  SECTION("heads not dividing the width") {
    write_config(R"({"n_embd": 32, "n_layer": 2, "n_head": 5, "n_positions": 16,
                     "vocab_size": 67})");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("config.json") && Contains("does not divide"));
  }
  SECTION("an activation other than the tanh GELU") {
    write_config(R"({"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16,
                     "vocab_size": 67, "activation_function": "relu"})");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d), Contains("activation_function \"relu\""));
  }
  SECTION("n_ctx is accepted in place of n_positions; weights must exist") {
    write_config(good);
    CHECK(trident::models::read_hf_gpt2_config(d + "/config.json").block_size == 16);
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d), Contains("no model.safetensors"));
    trident::test::write_bytes(d + "/pytorch_model.bin", "x");
    REQUIRE_THROWS_WITH(trident::models::load_hf_gpt2(d),
                        Contains("pytorch_model.bin but no model.safetensors"));
  }
}
