// HDF5 checkpoint files: round trip, metadata, checksums catching a flipped byte, truncated and
// foreign files named in the error, and the directory's latest/prune rules.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io_test_util.hpp"
#include "trident/core/checkpoint.hpp"
#include "trident/core/error.hpp"

using namespace trident;
using trident::test::ScratchDir;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_small(const std::string& path, const std::vector<float>& w) {
  CheckpointWriter cw(path);
  cw.set_meta("step", int64_t{42});
  cw.set_meta("lr", 0.25);
  cw.set_meta("config", std::string("{\"n_layer\": 2}"));
  cw.add("h.0.attn.c_attn.weight", "value", {2, 3}, w.data());
  cw.add("h.0.attn.c_attn.weight", "exp_avg", {2, 3}, w.data());
  const float b = 7.5f;
  cw.add("ln_f.bias", "value", {1}, &b);
  cw.commit();
}

}  // namespace

TEST_CASE("checkpoint round trip keeps tensors, shapes and metadata", "[io][checkpoint]") {
  ScratchDir dir("ckpt");
  const std::vector<float> w{1, -2, 3.5f, 4, 1e-30f, -0.0f};
  const std::string path = dir.file("step_00000042.h5");
  write_small(path, w);
  REQUIRE(std::filesystem::exists(path));
  REQUIRE_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));

  CheckpointReader r(path);
  CHECK(r.meta_int("step") == 42);
  CHECK(r.meta_double("lr") == 0.25);
  CHECK(r.meta_string("config") == "{\"n_layer\": 2}");
  CHECK_FALSE(r.has_meta("missing"));
  CHECK(r.params() == std::vector<std::string>{"h.0.attn.c_attn.weight", "ln_f.bias"});
  CHECK(r.has("h.0.attn.c_attn.weight", "exp_avg"));
  CHECK_FALSE(r.has("ln_f.bias", "exp_avg"));
  CHECK(r.shape("h.0.attn.c_attn.weight", "value") == std::vector<int64_t>{2, 3});
  const auto got = r.read("h.0.attn.c_attn.weight", "value");
  REQUIRE(got.size() == w.size());
  CHECK(std::memcmp(got.data(), w.data(), w.size() * sizeof(float)) == 0);  // bitwise
  CHECK(r.read("ln_f.bias", "value") == std::vector<float>{7.5f});
}

TEST_CASE("a flipped byte in a checkpoint is reported with file and dataset",
          "[io][checkpoint]") {
  ScratchDir dir("ckpt_corrupt");
  std::vector<float> w(64);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.001f * static_cast<float>(i * i) + 1.0f;
  const std::string path = dir.file("step_00000001.h5");
  write_small(path, std::vector<float>(w.begin(), w.begin() + 6));
  // Flip one bit in the middle of the stored weights (found by their byte pattern).
  std::string bytes = read_all(path);
  std::string needle(reinterpret_cast<const char*>(w.data() + 1), 2 * sizeof(float));
  const size_t at = bytes.find(needle);
  REQUIRE(at != std::string::npos);
  bytes[at + 2] = static_cast<char>(bytes[at + 2] ^ 0x10);
  trident::test::write_bytes(path, bytes);

  CheckpointReader r(path);  // the structure is intact
  CHECK_THROWS_WITH(r.read("h.0.attn.c_attn.weight", "value"),
                    Catch::Contains("step_00000001.h5") &&
                        Catch::Contains("/params/h.0.attn.c_attn.weight/value is corrupted"));
  CHECK(r.read("ln_f.bias", "value") == std::vector<float>{7.5f});
}

TEST_CASE("truncated, missing and foreign checkpoint files are named", "[io][checkpoint]") {
  ScratchDir dir("ckpt_bad");
  const std::string path = dir.file("step_00000003.h5");
  write_small(path, {1, 2, 3, 4, 5, 6});
  const std::string bytes = read_all(path);
  trident::test::write_bytes(path, bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH(
      [&] {
        CheckpointReader r(path);
        for (const auto& p : r.params()) r.read(p, "value");
      }(),
      Catch::Contains("step_00000003.h5"));
  CHECK_THROWS_WITH(CheckpointReader(dir.file("nope.h5")), Catch::Contains("nope.h5: no such file"));
  trident::test::write_bytes(dir.file("text.h5"), "hello, not hdf5");
  CHECK_THROWS_WITH(CheckpointReader(dir.file("text.h5")), Catch::Contains("text.h5: not a readable HDF5"));
  {
    hdf5::File f = hdf5::File::create(dir.file("other.h5"));
    f.set_attr("format", "something-else");
  }
  CHECK_THROWS_WITH(CheckpointReader(dir.file("other.h5")),
                    Catch::Contains("other.h5: not a Trident checkpoint"));
}

TEST_CASE("an uncommitted writer leaves nothing behind", "[io][checkpoint]") {
  ScratchDir dir("ckpt_abort");
  {
    CheckpointWriter cw(dir.file("step_00000005.h5"));
    const float x = 1;
    cw.add("a", "value", {1}, &x);
  }  // destroyed without commit, as when an exception unwinds
  CHECK(std::filesystem::is_empty(dir.str()));
  CHECK(latest_checkpoint(dir.str()).empty());
}

TEST_CASE("latest and prune keep the newest checkpoints", "[io][checkpoint]") {
  ScratchDir dir("ckpt_dir");
  CHECK(list_checkpoints(dir.file("missing")).empty());
  for (int64_t s : {10, 200, 30, 40}) write_small(checkpoint_path(dir.str(), s), {1, 2, 3, 4, 5, 6});
  trident::test::write_bytes(dir.file("step_00000300.h5.tmp.12345"), "half");  // a killed writer
  trident::test::write_bytes(dir.file("notes.txt"), "x");
  CHECK(latest_checkpoint(dir.str()) == checkpoint_path(dir.str(), 200));
  prune_checkpoints(dir.str(), 2);
  const auto left = list_checkpoints(dir.str());
  REQUIRE(left.size() == 2);
  CHECK(left[0].first == 40);
  CHECK(left[1].first == 200);
  CHECK_FALSE(std::filesystem::exists(dir.file("step_00000300.h5.tmp.12345")));
  CHECK(std::filesystem::exists(dir.file("notes.txt")));
}

TEST_CASE("checksum64 sees every single-bit flip of a buffer", "[io][checkpoint]") {
  std::vector<unsigned char> buf(37);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 31 + 7);
  const uint64_t base = checksum64(buf.data(), buf.size());
  for (size_t i = 0; i < buf.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      buf[i] ^= static_cast<unsigned char>(1 << bit);
      CHECK(checksum64(buf.data(), buf.size()) != base);
      buf[i] ^= static_cast<unsigned char>(1 << bit);
    }
  }
  CHECK(checksum64(buf.data(), 36) != checksum64(buf.data(), 37));
}
