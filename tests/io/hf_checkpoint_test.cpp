// The generic Hugging Face checkpoint writer/reader (hf_checkpoint.hpp): byte layout against
// the safetensors library's own serialisation examples and the fixtures written by
// tests/reference/make_hf_fixtures.py (an independent Python writer), dtype order, bf16
// rounding, config.json text, and a byte-for-byte load/save round trip.
#include "trident/models/hf_checkpoint.hpp"

#include <catch2/catch.hpp>
#include <cstring>

#include "io_test_util.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"

using Catch::Matchers::Contains;
using trident::DType;
using trident::models::HFTensor;
using trident::models::HFTensors;
using trident::test::read_all;
using trident::test::ScratchDir;

namespace {

HFTensor raw(DType dtype, std::vector<int64_t> shape, size_t nbytes, uint8_t first) {
  HFTensor t{dtype, std::move(shape), std::vector<uint8_t>(nbytes)};
  for (size_t i = 0; i < nbytes; ++i) t.bytes[i] = static_cast<uint8_t>(first + i);
  return t;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

}  // namespace

TEST_CASE("hf_safetensors_bytes writes what the safetensors library writes", "[io]") {
  // The library's own serialisation tests (safetensors/src/tensor.rs): one F32 tensor [1,2,3]
  // holding 0..5 with no metadata, a shorter name that needs padding, and metadata alone.
  HFTensors one;
  one["attn.0"] = trident::models::hf_tensor_from_f32({1, 2, 3}, {0, 1, 2, 3, 4, 5});
  const std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  REQUIRE(header.size() == 64);
  std::string data(24, '\0');
  const float values[] = {0, 1, 2, 3, 4, 5};
  std::memcpy(data.data(), values, 24);
  CHECK(trident::models::hf_safetensors_bytes(one, {}) == le64(64) + header + data);

  HFTensors padded;
  padded["attn0"] = trident::models::hf_tensor_from_f32({1, 1, 2, 3}, {0, 1, 2, 3, 4, 5});
  CHECK(trident::models::hf_safetensors_bytes(padded, {}) ==
        le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
            std::string(7, ' ') + data);

  CHECK(trident::models::hf_safetensors_bytes({}, {{"framework", "pt"}}) ==
        le64(40) + R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '));
  CHECK(trident::models::hf_safetensors_bytes({}, {}) == le64(8) + "{}" + std::string(6, ' '));
}

TEST_CASE("hf_safetensors_bytes orders data by dtype, then name, as safetensors does", "[io]") {
  HFTensors t;
  t["a"] = raw(DType::BF16, {2}, 4, 10);
  t["b"] = raw(DType::F32, {1}, 4, 20);
  t["B"] = raw(DType::F32, {1}, 4, 30);
  t["c"] = raw(DType::I64, {1}, 8, 40);
  t["d"] = raw(DType::I32, {1}, 4, 50);
  const std::string bytes = trident::models::hf_safetensors_bytes(t);
  const std::string expected_header = R"({"__metadata__":{"format":"pt"},)"
                                      R"("c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                                      R"("B":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},)"
                                      R"("d":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},)"
                                      R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[20,24]}})";
  const size_t n = (expected_header.size() + 7) / 8 * 8;
  REQUIRE(bytes.size() == 8 + n + 24);
  CHECK(bytes.substr(0, 8) == le64(n));
  CHECK(bytes.substr(8, n) == expected_header + std::string(n - expected_header.size(), ' '));

  // Written to a file and read back (by the validating reader), every tensor is unchanged.
  ScratchDir dir("hf_order");
  const std::string path = dir.file("m.safetensors");
  trident::models::write_hf_safetensors(path, t);
  CHECK(read_all(path) == bytes);
  const HFTensors back = trident::models::read_hf_safetensors(path);
  REQUIRE(back.size() == t.size());
  for (const auto& [name, tensor] : t) {
    INFO(name);
    CHECK(back.at(name).dtype == tensor.dtype);
    CHECK(back.at(name).shape == tensor.shape);
    CHECK(back.at(name).bytes == tensor.bytes);
  }
  CHECK(trident::SafetensorsFile::open(path).metadata().at("format") == "pt");
}

TEST_CASE("hf_tensor_from_f32 rounds to bf16 as torch does; hf_tensor_to_f32 is exact", "[io]") {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1);
  // 1 + 3 * 2^-8 goes up to 1 + 2^-6; 1 + 2^-8 + 2^-20 is above the tie and goes up.
  const std::vector<float> v = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f,
                                -2.5f};
  const HFTensor t = trident::models::hf_tensor_from_f32({4}, v, DType::BF16);
  REQUIRE(t.bytes.size() == 8);
  const std::vector<uint8_t> expected = {0x80, 0x3f, 0x82, 0x3f, 0x81, 0x3f, 0x20, 0xc0};
  CHECK(t.bytes == expected);
  CHECK(trident::models::hf_tensor_to_f32(t) ==
        std::vector<float>{1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -2.5f});
  const HFTensor f = trident::models::hf_tensor_from_f32({2, 2}, v);
  CHECK(f.bytes.size() == 16);
  CHECK(trident::models::hf_tensor_to_f32(f) == v);
  REQUIRE_THROWS_WITH(trident::models::hf_tensor_from_f32({3}, v),
                      Contains("shape holds 3 elements but 4 values"));
  REQUIRE_THROWS_WITH(trident::models::hf_tensor_to_f32(raw(DType::I32, {1}, 4, 0), "x.weight"),
                      Contains("x.weight has dtype I32"));
}

TEST_CASE("hf_config_text writes config.json as transformers does", "[io]") {
  const nlohmann::json c = {{"vocab_size", 61},           {"architectures", {"GPT2LMHeadModel"}},
                            {"layer_norm_epsilon", 1e-5}, {"attn_pdrop", 0.0},
                            {"n_inner", nullptr},         {"use_cache", true}};
  CHECK(trident::models::hf_config_text(c) ==
        "{\n"
        "  \"architectures\": [\n"
        "    \"GPT2LMHeadModel\"\n"
        "  ],\n"
        "  \"attn_pdrop\": 0.0,\n"
        "  \"layer_norm_epsilon\": 1e-05,\n"
        "  \"n_inner\": null,\n"
        "  \"use_cache\": true,\n"
        "  \"vocab_size\": 61\n"
        "}\n");
}

TEST_CASE("an HF fixture loaded and saved again is byte for byte the same", "[io]") {
  for (const std::string name : {"hf_gpt2_tiny", "hf_gpt2_tiny_bf16"}) {
    INFO(name);
    const std::string src = TRIDENT_FIXTURE_DIR "/" + name;
    const auto ck = trident::models::load_hf_checkpoint(src);
    CHECK(ck.tensors.size() == 28);
    ScratchDir dir("hf_resave");
    trident::models::save_hf_checkpoint(dir.str() + "/out", ck);
    CHECK(read_all(dir.str() + "/out/model.safetensors") == read_all(src + "/model.safetensors"));
    CHECK(read_all(dir.str() + "/out/config.json") == read_all(src + "/config.json"));
  }
}

TEST_CASE("hf_checkpoint errors name the file and the problem", "[io]") {
  ScratchDir dir("hf_ck_errors");
  REQUIRE_THROWS_WITH(trident::models::load_hf_checkpoint(dir.str()),
                      Contains("config.json: cannot open"));
  trident::test::write_bytes(dir.file("config.json"), "[1, 2]");
  REQUIRE_THROWS_WITH(trident::models::load_hf_checkpoint(dir.str()),
                      Contains("config.json: not a JSON object"));
  trident::test::write_bytes(dir.file("config.json"), "{}");
  trident::test::write_bytes(dir.file("model.safetensors.index.json"), "{}");
  REQUIRE_THROWS_WITH(trident::models::load_hf_checkpoint(dir.str()),
                      Contains("sharded checkpoints"));
  HFTensors bad;
  bad["w"] = raw(DType::F32, {3}, 8, 0);
  REQUIRE_THROWS_WITH(trident::models::hf_safetensors_bytes(bad),
                      Contains("tensor 'w' has 8 bytes for 3 elements of F32"));
}
