// HDF5 checkpoint files: round trip, metadata, checksums catching a flipped byte, truncated and
// foreign files named in the error, and the directory's latest/prune rules. Also the hdf5.hpp
// wrapper under them and the token files: appendable datasets, range reads in the stored width,
// Fletcher-32 catching a flipped byte, and attributes as other programs write them.
#include "trident/io/checkpoint.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <tuple>

#include "io_test_util.hpp"
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

TEST_CASE("a flipped byte in a checkpoint is reported with file and dataset", "[io][checkpoint]") {
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
  CHECK_THROWS_WITH(CheckpointReader(dir.file("nope.h5")),
                    Catch::Contains("nope.h5: no such file"));
  trident::test::write_bytes(dir.file("text.h5"), "hello, not hdf5");
  CHECK_THROWS_WITH(CheckpointReader(dir.file("text.h5")),
                    Catch::Contains("text.h5: not a readable HDF5"));
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
  for (int64_t s : {10, 200, 30, 40})
    write_small(checkpoint_path(dir.str(), s), {1, 2, 3, 4, 5, 6});
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

TEST_CASE("hdf5::Dataset appends, reads ranges in the stored width, catches a flipped byte",
          "[io][checkpoint]") {
  ScratchDir dir("h5_dataset");
  const std::string path = dir.file("ids.h5");
  std::vector<uint32_t> ids(100);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint32_t>(0x3A00 + 7 * i);
  {
    hdf5::File f = hdf5::File::create(path);
    hdf5::Dataset d = f.create_appendable("ids", hdf5::Elem::U16, /*chunk=*/16);
    CHECK(d.info().shape == std::vector<int64_t>{0});
    d.append(hdf5::Elem::U32, ids.data(), 30);  // HDF5 narrows to the stored uint16
    d.append(hdf5::Elem::U32, ids.data() + 30, 0);
    d.append(hdf5::Elem::U32, ids.data() + 30, 70);
    CHECK(d.info().shape == std::vector<int64_t>{100});
    d.set_attr("count", int64_t{100});
    d.set_attr_varlen("name", "token ids");
    d.close();
    f.close();
  }
  {
    hdf5::File f = hdf5::File::open(path, hdf5::Locking::Off);
    hdf5::Dataset d = f.open_dataset("ids");
    CHECK(d.info().elem == hdf5::Elem::U16);
    CHECK(d.info().shape == std::vector<int64_t>{100});
    std::vector<uint16_t> got(25);
    d.read_range(10, 25, got.data());  // across chunks and the two appends
    CHECK(got == std::vector<uint16_t>(ids.begin() + 10, ids.begin() + 35));
    d.read_range(100, 0, nullptr);
    CHECK_THROWS_WITH(d.read_range(90, 11, got.data()),
                      Catch::Contains("ids.h5: /ids: elements [90, 101) are outside its 100"));
    CHECK(d.attr_int("count") == 100);
    CHECK(d.attr_string("name") == "token ids");
    CHECK_FALSE(f.has_attr("count"));
    CHECK(f.has_attr("count", "ids"));
    CHECK_THROWS_WITH(d.append(hdf5::Elem::U32, ids.data(), 1),
                      Catch::Contains("ids.h5: /ids: cannot grow"));
  }

  // Flip a byte of element 40 (in the chunk of elements [32, 48)).
  std::string bytes = read_all(path);
  const std::vector<uint16_t> run(ids.begin() + 38, ids.begin() + 43);
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(run.data()), 10));
  REQUIRE(at != std::string::npos);
  bytes[at + 4] = static_cast<char>(bytes[at + 4] ^ 0x01);
  trident::test::write_bytes(path, bytes);
  hdf5::File f = hdf5::File::open(path);
  const hdf5::Dataset d = f.open_dataset("ids");
  std::vector<uint16_t> got(16);
  d.read_range(16, 16, got.data());  // the chunk before is intact
  CHECK(got == std::vector<uint16_t>(ids.begin() + 16, ids.begin() + 32));
  try {
    d.read_range(32, 16, got.data());
    FAIL("a flipped byte was read without an error");
  } catch (const hdf5::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("ids.h5: /ids: cannot read elements [32, 48)"));
    CHECK_THAT(e.reason(), Catch::Contains("filter"));  // HDF5's reason: the checksum filter
  }
}

TEST_CASE("hdf5 attributes and datasets as other programs write them", "[io][checkpoint]") {
  ScratchDir dir("h5_foreign");
  const std::string path = dir.file("other.h5");
  {
    hdf5::File f = hdf5::File::create(path);
    const hid_t root = f.id();
    const hid_t scalar = H5Screate(H5S_SCALAR);
    auto attr = [&](const char* name, hid_t file_type, hid_t mem_type, const void* v, hid_t space) {
      const hid_t a = H5Acreate2(root, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, mem_type, v);
      H5Aclose(a);
    };
    const int8_t i8 = -5;
    const uint16_t u16 = 65535;
    const float f32 = 2.5f;
    const int32_t three[3] = {1, 2, 3};
    attr("i8", H5T_STD_I8LE, H5T_NATIVE_INT8, &i8, scalar);
    attr("u16", H5T_STD_U16BE, H5T_NATIVE_UINT16, &u16, scalar);
    attr("f32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &f32, scalar);
    const hsize_t n3 = 3;
    const hid_t vec = H5Screate_simple(1, &n3, nullptr);
    attr("three", H5T_STD_I32LE, H5T_NATIVE_INT32, three, vec);
    // Fixed-length strings: numpy's bytes (null-padded, no terminator), Fortran's (space-padded).
    for (auto [name, text, pad] :
         {std::tuple<const char*, const char*, H5T_str_t>{"nullpad", "gpt2", H5T_STR_NULLPAD},
          {"spacepad", "byte  ", H5T_STR_SPACEPAD}}) {
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, std::strlen(text));
      H5Tset_strpad(t, pad);
      attr(name, t, t, text, scalar);
      H5Tclose(t);
    }
    const hid_t vlen = H5Tcopy(H5T_C_S1);  // h5py's str: variable-length
    H5Tset_size(vlen, H5T_VARIABLE);
    const char* text = "variable";
    attr("vlen", vlen, vlen, &text, scalar);
    H5Tclose(vlen), H5Sclose(vec), H5Sclose(scalar);
    const int64_t big[2] = {-1, int64_t{1} << 40};
    f.write_dataset("i64", hdf5::Elem::I64, {2}, big);
    const int8_t small[2] = {-1, 7};
    f.write_dataset("i8", hdf5::Elem::I8, {2, 1}, small);
  }
  const hdf5::File f = hdf5::File::open(path);
  CHECK(f.attr_int("i8") == -5);
  CHECK(f.attr_int("u16") == 65535);
  CHECK(f.attr_double("u16") == 65535.0);
  CHECK(f.attr_double("f32") == 2.5);
  CHECK(f.attr_string("nullpad") == "gpt2");
  CHECK(f.attr_string("spacepad") == "byte");
  CHECK(f.attr_string("vlen") == "variable");
  CHECK_THROWS_WITH(f.attr_int("f32"),
                    Catch::Contains("other.h5: /: attribute f32 must be one integer"));
  CHECK_THROWS_WITH(f.attr_int("three"), Catch::Contains("must be one integer (it holds 3 values"));
  CHECK_THROWS_WITH(f.attr_string("i8"), Catch::Contains("attribute i8 must be one string"));
  CHECK_THROWS_WITH(f.attr_int("absent"), Catch::Contains("missing attribute 'absent'"));
  const hdf5::Dataset i64 = f.open_dataset("i64");
  CHECK(i64.info().elem == hdf5::Elem::I64);
  int64_t got[2] = {};
  i64.read_range(0, 2, got);
  CHECK(got[1] == int64_t{1} << 40);
  CHECK(f.dataset_info("i8").elem == hdf5::Elem::I8);
  CHECK(f.dataset_info("i8").shape == std::vector<int64_t>{2, 1});
  CHECK_THROWS_WITH(f.open_dataset("i8").read_range(0, 1, got),
                    Catch::Contains("range reads need a 1-D dataset, it has 2 dimensions"));
  CHECK_THROWS_WITH(f.open_dataset("absent"),
                    Catch::Contains("other.h5: /absent: missing dataset"));
}
