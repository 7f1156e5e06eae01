// SafetensorsFile / SafetensorsWriter: round trips, dtype conversion, and one test per
// malformed-file error, each checking the message names the file and the problem.
#include "trident/io/safetensors.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>

#include "io_test_util.hpp"
#include "trident/core/error.hpp"

using Catch::Matchers::Contains;
using trident::DType;
using trident::SafetensorsFile;
using trident::SafetensorsWriter;
using trident::test::ScratchDir;

namespace {

// A safetensors file from a header string and data bytes; the length field is the header's
// size unless `header_len` overrides it.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t header_len = -1) {
  uint64_t n = header_len < 0 ? header.size() : uint64_t(header_len);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i, n >>= 8) bytes[i] = static_cast<char>(n & 0xff);
  trident::test::write_bytes(path, bytes + header + data);
}

uint64_t header_length_of(const std::string& path) {
  const std::string bytes = trident::test::read_all(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return n;
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype, shape and metadata", "[io]") {
  ScratchDir dir("st_roundtrip");
  const std::string path = dir.file("all.safetensors");

  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
  const std::vector<double> f64 = {0.1, -1e10, 3.0};
  // f16 bit patterns: 1.0, -2.0, 0.5, the smallest subnormal 2^-24, +inf, 65504 (max).
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x0001, 0x7C00, 0x7BFF};
  // bf16 bit patterns: 1.0, -3.0, 2^-126 (smallest normal), -inf.
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC040, 0x0080, 0xFF80};
  const std::vector<int32_t> i32 = {7, -8, 2147483647};
  const std::vector<int64_t> i64 = {-2147483648LL, 5};
  const std::vector<uint8_t> u8 = {0, 255, 17};
  const float scalar = 42.0f;

  SafetensorsWriter w;
  w.add_f32("weights.f32", {2, 3}, f32);
  w.add("weights.f64", DType::F64, {3}, f64.data());
  w.add("half", DType::F16, {6}, f16.data());
  w.add("brain", DType::BF16, {2, 2}, bf16.data());
  w.add_i32("ids", {3}, i32);
  w.add("ids64", DType::I64, {2}, i64.data());
  w.add("bytes", DType::U8, {3}, u8.data());
  w.add("scalar", DType::F32, {}, &scalar);
  w.add("empty", DType::F32, {0, 5}, nullptr);
  w.set_metadata("n_embd", "32");
  w.set_metadata("note", "written by the test");
  w.write(path);

  // The data section starts 8-byte aligned, and no temporary file is left behind.
  CHECK((8 + header_length_of(path)) % 8 == 0);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.str())) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);

  SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.names() == std::vector<std::string>{"brain", "bytes", "empty", "half", "ids", "ids64",
                                              "scalar", "weights.f32", "weights.f64"});
  CHECK(f.has("ids"));
  CHECK_FALSE(f.has("nope"));
  CHECK(f.info("weights.f32").dtype == DType::F32);
  CHECK(f.info("weights.f32").shape == std::vector<int64_t>{2, 3});
  CHECK(f.info("brain").dtype == DType::BF16);
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.info("scalar").numel() == 1);
  CHECK(f.info("empty").shape == std::vector<int64_t>{0, 5});
  CHECK(f.metadata().at("n_embd") == "32");
  CHECK(f.metadata().at("note") == "written by the test");

  CHECK(f.read_f32("weights.f32") == f32);
  const std::vector<float> d = f.read_f32("weights.f64");
  CHECK(d == std::vector<float>{0.1f, -1e10f, 3.0f});
  const std::vector<float> h = f.read_f32("half");
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == -2.0f);
  CHECK(h[2] == 0.5f);
  CHECK(h[3] == std::ldexp(1.0f, -24));
  CHECK(h[4] == std::numeric_limits<float>::infinity());
  CHECK(h[5] == 65504.0f);
  const std::vector<float> b = f.read_f32("brain");
  CHECK(b == std::vector<float>{1.0f, -3.0f, std::ldexp(1.0f, -126),
                                -std::numeric_limits<float>::infinity()});
  CHECK(f.read_i32("ids") == i32);
  CHECK(f.read_i32("ids64") == std::vector<int32_t>{-2147483647 - 1, 5});
  CHECK(f.read_bytes("bytes") == u8);
  CHECK(f.read_f32("scalar") == std::vector<float>{42.0f});
  CHECK(f.read_f32("empty").empty());
}

TEST_CASE("safetensors f16 NaN and negative zero convert", "[io]") {
  ScratchDir dir("st_nan");
  const std::vector<uint16_t> f16 = {0x7E00, 0x8000, 0x83FF};  // NaN, -0, -largest subnormal
  SafetensorsWriter w;
  w.add("h", DType::F16, {3}, f16.data());
  w.write(dir.file("h.safetensors"));
  auto f = SafetensorsFile::open(dir.file("h.safetensors"));
  const auto v = f.read_f32("h");
  CHECK(std::isnan(v[0]));
  CHECK(v[1] == 0.0f);
  CHECK(std::signbit(v[1]));
  CHECK(v[2] == -1023.0f * std::ldexp(1.0f, -24));
}

TEST_CASE("safetensors reads refuse the wrong dtype and missing names", "[io]") {
  ScratchDir dir("st_dtype");
  const std::string path = dir.file("m.safetensors");
  const std::vector<int64_t> big = {int64_t{1} << 40};
  SafetensorsWriter w;
  w.add_f32("x", {1}, {1.0f});
  w.add_i32("ids", {1}, {3});
  w.add("big", DType::I64, {1}, big.data());
  w.write(path);
  auto f = SafetensorsFile::open(path);
  REQUIRE_THROWS_WITH(f.read_f32("ids"), Contains("m.safetensors") && Contains("'ids'") &&
                                             Contains("I32") && Contains("F32, F64, BF16 or F16"));
  REQUIRE_THROWS_WITH(f.read_i32("x"), Contains("'x'") && Contains("I32 or I64"));
  REQUIRE_THROWS_WITH(f.read_i32("big"), Contains("1099511627776") && Contains("int32"));
  REQUIRE_THROWS_WITH(f.info("y"), Contains("m.safetensors") && Contains("no tensor named 'y'"));
  REQUIRE_THROWS_AS(f.read_f32("y"), trident::Error);
}

TEST_CASE("safetensors writer refuses duplicate, reserved and mis-sized tensors", "[io]") {
  SafetensorsWriter w;
  w.add_f32("a", {2}, {1.0f, 2.0f});
  REQUIRE_THROWS_WITH(w.add_f32("a", {2}, {1.0f, 2.0f}), Contains("'a' added twice"));
  REQUIRE_THROWS_WITH(w.add_f32("__metadata__", {1}, {1.0f}), Contains("reserved"));
  REQUIRE_THROWS_WITH(w.add_f32("b", {2, 2}, {1.0f}), Contains("[2, 2]") && Contains("1 values"));
  REQUIRE_THROWS_WITH(w.add("c", DType::F32, {-1}, nullptr), Contains("negative dimension"));
  REQUIRE_THROWS_WITH(w.write("/nonexistent-dir/x.safetensors"), Contains("cannot create"));
}

TEST_CASE("safetensors rejects malformed files with a message naming file and problem", "[io]") {
  ScratchDir dir("st_bad");
  const std::string path = dir.file("bad.safetensors");
  const std::string one_f32 = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

  SECTION("missing file") {
    REQUIRE_THROWS_WITH(SafetensorsFile::open(dir.file("absent.safetensors")),
                        Contains("absent.safetensors") && Contains("cannot open"));
  }
  SECTION("shorter than 8 bytes") {
    trident::test::write_bytes(path, "abc");
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("bad.safetensors") &&
                                                         Contains("3 bytes") &&
                                                         Contains("8-byte header length"));
  }
  SECTION("header length beyond the file") {
    write_raw(path, one_f32, std::string(8, '\0'), 100000);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("bad.safetensors") &&
                                                         Contains("header length 100000") &&
                                                         Contains("runs past the end of the file"));
  }
  SECTION("header not JSON") {
    write_raw(path, "{\"x\": [1, 2", "");
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("bad.safetensors") && Contains("not valid JSON"));
  }
  SECTION("header JSON but not an object") {
    write_raw(path, "[1, 2, 3]", "");
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("bad.safetensors") &&
                                                         Contains("not an object") &&
                                                         Contains("array"));
  }
  SECTION("unknown dtype") {
    write_raw(path, R"({"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})",
              std::string(8, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("bad.safetensors") &&
                                                         Contains("'x'") &&
                                                         Contains("unknown dtype 'Q7'"));
  }
  SECTION("a valid safetensors dtype Trident has no type for") {
    write_raw(path, R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})",
              std::string(2, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("'m'") && Contains("BOOL") && Contains("does not read"));
  }
  SECTION("shape x item size differs from the byte range") {
    write_raw(path, R"({"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
              std::string(20, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("bad.safetensors") && Contains("'x'") && Contains("[2, 3]") &&
                            Contains("needs 24 bytes") && Contains("span 20"));
  }
  SECTION("missing and malformed fields") {
    write_raw(path, R"({"x":{"dtype":"F32","data_offsets":[0,8]}})", std::string(8, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("'x'") && Contains("\"shape\""));
    write_raw(path, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
              std::string(8, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("data_offsets"));
    write_raw(path, R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
              std::string(8, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("non-negative integers"));
    write_raw(path, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
              std::string(8, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("[8, 0]") && Contains("reversed"));
    write_raw(path, R"({"__metadata__":{"k":1}})", "");
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("__metadata__") && Contains("'k'"));
  }
  SECTION("overlapping offsets") {
    write_raw(path,
              R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
              R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
              std::string(24, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("bad.safetensors") && Contains("'a' [0, 16]") &&
                            Contains("'b' [8, 24]") && Contains("overlap"));
  }
  SECTION("offsets beyond the data section") {
    write_raw(path,
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[1000,1008]}})",
              std::string(16, '\0'));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("bad.safetensors") && Contains("'b'") &&
                            Contains("[1000, 1008]") &&
                            Contains("run past the end of the data section (16 bytes)"));
  }
  SECTION("truncated data section") {
    SafetensorsWriter w;
    w.add_f32("a", {4}, std::vector<float>(4, 1.0f));
    w.add_f32("b", {4}, std::vector<float>(4, 2.0f));
    w.write(path);
    const std::string whole = trident::test::read_all(path);
    trident::test::write_bytes(path, whole.substr(0, whole.size() - 12));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains("bad.safetensors: truncated: tensors need 32 bytes after the "
                                 "header, the file holds 20"));
  }
}

TEST_CASE("safetensors reads the fixture written by the PyTorch script", "[io]") {
  auto f = SafetensorsFile::open(TRIDENT_FIXTURE_DIR "/gpt_tiny_grads.safetensors");
  CHECK(f.metadata().at("n_embd") == "32");
  CHECK(f.metadata().at("vocab_size") == "67");
  CHECK(f.info("inputs").dtype == DType::I32);
  CHECK(f.info("inputs").shape == std::vector<int64_t>{3, 11});
  CHECK(f.info("logits").shape == std::vector<int64_t>{3, 11, 67});
  CHECK(f.info("loss").shape == std::vector<int64_t>{1});
  CHECK(f.info("blocks.1.attn.qkv.weight").shape == std::vector<int64_t>{96, 32});
  CHECK(f.info("grad.blocks.1.attn.qkv.weight").shape == std::vector<int64_t>{96, 32});
  for (int32_t id : f.read_i32("inputs")) CHECK((id >= 0 && id < 67));
  const float loss = f.read_f32("loss")[0];
  CHECK(loss > 3.5f);  // about ln(67) = 4.2 for near-uniform logits
  CHECK(loss < 5.0f);
}
