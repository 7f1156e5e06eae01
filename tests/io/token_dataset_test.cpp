// Token data sets: HDF5 token files (round trip, attributes, dtype, files from other writers),
// globbed and listed shards, per-rank window reads against slicing the whole array, the window
// order, and the errors for truncated or corrupted files and out-of-vocabulary tokens.
#include "trident/io/token_dataset.hpp"

#include <hdf5.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "io_test_util.hpp"
#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/io/data.hpp"
#include "trident/io/hdf5_tokens.hpp"
#include "trident/io/token_file.hpp"

using Catch::Matchers::Contains;
using trident::test::ScratchDir;
namespace data = trident::data;

namespace {

std::vector<int32_t> pattern_tokens(int64_t n, int64_t vocab, int64_t salt = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>(((i + salt) * 7919 + 13) % vocab);
  return t;
}

void write_h5(const std::string& path, const std::vector<int32_t>& t, int64_t vocab,
              const std::string& tokenizer = "byte", int64_t eot = -1) {
  trident::Hdf5TokenWriter w(path, vocab, tokenizer, eot);
  w.append(t.data(), static_cast<int64_t>(t.size()));
  w.finish();
}

void write_bin(const std::string& path, const std::vector<int32_t>& t) {
  trident::write_token_file(path, std::vector<uint16_t>(t.begin(), t.end()));
}

std::vector<int32_t> read_all(const data::TokenSource& s) {
  std::vector<int32_t> out(static_cast<size_t>(s.size()));
  s.read(0, s.size(), out.data());
  return out;
}

// A source that counts the tokens read through it, to show that loaders read windows only.
class CountingSource final : public data::TokenSource {
 public:
  explicit CountingSource(data::TokenSourcePtr base) : base_(std::move(base)) {}
  int64_t size() const override { return base_->size(); }
  std::string name() const override { return base_->name(); }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    tokens_read += count;
    base_->read(begin, count, out);
  }
  mutable int64_t tokens_read = 0;

 private:
  data::TokenSourcePtr base_;
};

// Flips one byte inside the first run of `marker` (a 2-byte token repeated) in the file.
void corrupt_token_bytes(const std::string& path, uint16_t marker) {
  std::string bytes = trident::test::read_all(path);
  std::string run;
  for (int i = 0; i < 64; ++i) run.append(reinterpret_cast<const char*>(&marker), 2);
  const size_t at = bytes.find(run);
  REQUIRE(at != std::string::npos);
  bytes[at + 33] ^= 0x5A;
  trident::test::write_bytes(path, bytes);
}

}  // namespace

TEST_CASE("HDF5 token file round trip with its attributes", "[io]") {
  ScratchDir dir("h5_roundtrip");
  SECTION("uint16 ids, several flushes, an end-of-text token") {
    const std::string path = dir.file("train.h5");
    const auto tokens = pattern_tokens(600000, 50257);  // > 16 chunks: written in two flushes
    write_h5(path, tokens, 50257, "gpt2", 50256);
    CHECK(trident::has_hdf5_signature(path));
    trident::Hdf5TokenReader r(path);
    CHECK(r.meta().num_tokens == 600000);
    CHECK(r.meta().vocab_size == 50257);
    CHECK(r.meta().tokenizer == "gpt2");
    CHECK(r.meta().eot_token == 50256);
    CHECK(r.meta().format_version == 1);
    CHECK(r.meta().token_bytes == 2);
    std::vector<int32_t> all(tokens.size());
    r.read(0, 600000, all.data());
    CHECK(all == tokens);
    std::vector<int32_t> part(100);
    r.read(524238, 100, part.data());  // across the boundary of the two flushes
    CHECK(part == std::vector<int32_t>(tokens.begin() + 524238, tokens.begin() + 524338));
    REQUIRE_THROWS_WITH(r.read(599990, 20, part.data()),
                        Contains("train.h5") && Contains("[599990, 600010)"));
    CHECK_FALSE(std::filesystem::exists(trident::temporary_path_for(path)));
  }
  SECTION("uint32 ids when the vocabulary passes 65536, no end-of-text token") {
    const std::string path = dir.file("big_vocab.h5");
    const auto tokens = pattern_tokens(5000, 100000);
    write_h5(path, tokens, 100000, "custom");
    trident::Hdf5TokenReader r(path);
    CHECK(r.meta().token_bytes == 4);
    CHECK(r.meta().eot_token == -1);
    CHECK(read_all(*data::open_token_file(path)) == tokens);
  }
  SECTION("the writer refuses ids outside the vocabulary and leaves no file behind") {
    const std::string path = dir.file("bad.h5");
    {
      trident::Hdf5TokenWriter w(path, 300, "byte");
      const int32_t bad[3] = {1, 2, 300};
      REQUIRE_THROWS_WITH(w.append(bad, 3),
                          Contains("bad.h5") && Contains("token 300") && Contains("position 2"));
    }
    CHECK_FALSE(std::filesystem::exists(path));
    CHECK_FALSE(std::filesystem::exists(trident::temporary_path_for(path)));
  }
}

TEST_CASE("HDF5 token files from other writers: int64 ids, attributes on the root", "[io]") {
  ScratchDir dir("h5_foreign");
  const std::string path = dir.file("foreign.h5");
  // What h5py writes for f.create_dataset("tokens", data=np.array(ids)); f.attrs[k] = v.
  auto write = [&](const std::vector<int64_t>& ids, int64_t num_tokens_attr) {
    const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t n = ids.size();
    const hid_t space = H5Screate_simple(1, &n, nullptr);
    const hid_t d =
        H5Dcreate2(f, "tokens", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data());
    const hid_t scalar = H5Screate(H5S_SCALAR);
    for (auto [name, value] :
         {std::pair<const char*, int64_t>{"vocab_size", 16}, {"num_tokens", num_tokens_attr}}) {
      const hid_t a = H5Acreate2(f, name, H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
      const int32_t v = static_cast<int32_t>(value);
      H5Awrite(a, H5T_NATIVE_INT32, &v);
      H5Aclose(a);
    }
    H5Sclose(scalar), H5Dclose(d), H5Sclose(space), H5Fclose(f);
  };
  write({5, 6, 7, 8, 9, 10, 11}, 7);
  {
    trident::Hdf5TokenReader r(path);
    CHECK(r.meta().token_bytes == 8);
    CHECK(r.meta().vocab_size == 16);
    CHECK(r.meta().tokenizer.empty());
    CHECK(read_all(*data::open_token_file(path, 16)) ==
          std::vector<int32_t>{5, 6, 7, 8, 9, 10, 11});
    REQUIRE_THROWS_WITH(data::open_token_file(path, 8), Contains("vocabulary of 16"));
  }  // closed: HDF5 will not truncate a file it holds open

  write({5, -6, 7}, 3);
  REQUIRE_THROWS_WITH(read_all(*data::open_token_file(path)),
                      Contains("foreign.h5: token -6 at position 1 is not a valid token id"));
  write({5, 6, 7}, 9);
  REQUIRE_THROWS_WITH(trident::Hdf5TokenReader(path), Contains("foreign.h5") &&
                                                          Contains("num_tokens attribute says 9") &&
                                                          Contains("holds 3"));
}

TEST_CASE("truncated and corrupted token files are detected and named", "[io]") {
  ScratchDir dir("h5_corrupt");
  const std::vector<int32_t> tokens(200000, 0x1234);  // a recognisable byte pattern on disk
  SECTION("HDF5 truncated to half") {
    const std::string path = dir.file("cut.h5");
    write_h5(path, tokens, 65536);
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    REQUIRE_THROWS_WITH(data::open_token_file(path, 65536),
                        Contains("cut.h5") && Contains("truncated"));
  }
  SECTION("HDF5 with a flipped byte in a data chunk: the Fletcher-32 checksum fails the read") {
    const std::string path = dir.file("flipped.h5");
    write_h5(path, tokens, 65536);
    corrupt_token_bytes(path, 0x1234);
    auto source = data::open_token_file(path, 65536);  // metadata is intact
    REQUIRE_THROWS_WITH(read_all(*source), Contains("flipped.h5") && Contains("reading tokens") &&
                                               Contains("corrupted"));
  }
  SECTION("HDF5 whose signature was overwritten") {
    const std::string path = dir.file("nosig.h5");
    write_h5(path, tokens, 65536);
    std::string bytes = trident::test::read_all(path);
    bytes[1] = 'X';
    trident::test::write_bytes(path, bytes);
    REQUIRE_THROWS_WITH(data::open_token_file(path),
                        Contains("nosig.h5") && Contains("not an HDF5 file"));
  }
  SECTION("an HDF5 file without /tokens") {
    const std::string path = dir.file("empty.h5");
    H5Fclose(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    REQUIRE_THROWS_WITH(data::open_token_file(path),
                        Contains("empty.h5") && Contains("no dataset 'tokens'"));
  }
  SECTION(".bin shorter than its header says, inside a glob") {
    write_bin(dir.file("shard_000.bin"), pattern_tokens(100, 256));
    write_bin(dir.file("shard_001.bin"), pattern_tokens(100, 256));
    std::filesystem::resize_file(dir.file("shard_001.bin"), 1024 + 150);
    REQUIRE_THROWS_WITH(data::open_token_source(dir.file("shard_*.bin")),
                        Contains("shard_001.bin") && Contains("truncated"));
  }
  SECTION("a missing file and a glob matching nothing") {
    REQUIRE_THROWS_WITH(data::open_token_source(dir.file("nope.bin")),
                        Contains("nope.bin") && Contains("no such file"));
    REQUIRE_THROWS_WITH(data::open_token_source(dir.file("none_*.h5")),
                        Contains("none_*.h5") && Contains("no file matches"));
  }
}

TEST_CASE("shards: globs concatenate in name order, lists in the order given", "[io]") {
  ScratchDir dir("shards");
  // Mixed kinds, created out of name order.
  const auto a = pattern_tokens(1000, 256, 1), b = pattern_tokens(777, 256, 2),
             c = pattern_tokens(1500, 256, 3);
  write_h5(dir.file("train_002.h5"), c, 256);
  write_bin(dir.file("train_000.bin"), a);
  write_h5(dir.file("train_001.h5"), b, 256);
  std::vector<int32_t> abc = a;
  abc.insert(abc.end(), b.begin(), b.end());
  abc.insert(abc.end(), c.begin(), c.end());

  const auto paths = data::expand_token_paths(dir.file("train_*"));
  REQUIRE(paths.size() == 3);
  CHECK(paths[0] == dir.file("train_000.bin"));
  CHECK(paths[2] == dir.file("train_002.h5"));
  auto glob = data::open_token_source(dir.file("train_*"), 256);
  CHECK(glob->size() == 3277);
  CHECK(read_all(*glob) == abc);
  CHECK(glob->tokenizer() == "byte");
  CHECK(glob->recorded_vocab_size() == 256);
  std::vector<int32_t> span(300);  // a read across all three shards
  glob->read(950, 300, span.data());
  CHECK(span == std::vector<int32_t>(abc.begin() + 950, abc.begin() + 1250));

  auto list = data::open_token_source(dir.file("train_002.h5") + "," + dir.file("train_000.bin"));
  std::vector<int32_t> ca = c;
  ca.insert(ca.end(), a.begin(), a.end());
  CHECK(read_all(*list) == ca);

  SECTION("shards must agree on their tokenizer") {
    write_h5(dir.file("other_000.h5"), a, 50257, "gpt2");
    write_h5(dir.file("other_001.h5"), b, 256, "byte");
    REQUIRE_THROWS_WITH(data::open_token_source(dir.file("other_*.h5")),
                        Contains("other_001.h5") && Contains("'byte'") && Contains("'gpt2'"));
  }
}

TEST_CASE("vocabulary checks name the file and the position", "[io]") {
  ScratchDir dir("vocab");
  auto tokens = pattern_tokens(3000, 100);
  SECTION("a .bin shard with one bad token, found when the source is verified at open") {
    write_bin(dir.file("s_000.bin"), tokens);
    tokens[2500] = 120;
    write_bin(dir.file("s_001.bin"), tokens);
    auto source = data::open_token_source(dir.file("s_*.bin"), 100);
    REQUIRE_THROWS_WITH(data::verify_token_source(*source),
                        Contains("s_001.bin: token 120 at position 2500") &&
                            Contains("outside the model's vocabulary of 100"));
  }
  SECTION("a large source is spot-checked at open and checked on every window read") {
    tokens = pattern_tokens(200000, 100);
    tokens[100034] = 150;  // outside the first and last 64Ki tokens and the 16 sampled blocks
    write_bin(dir.file("big.bin"), tokens);
    auto source = data::open_token_file(dir.file("big.bin"), 100);
    data::verify_token_source(*source, /*full_scan_limit=*/1000);
    REQUIRE_THROWS_WITH(data::verify_token_source(*source),  // a full scan finds it
                        Contains("big.bin: token 150 at position 100034"));
    data::TokenDataset ds(source, 100, false, 0);
    std::vector<int32_t> x(100), y(100);
    ds.read_sample(999, x.data(), y.data());  // window 999 = tokens [99900, 100001): fine
    REQUIRE_THROWS_WITH(ds.read_sample(1000, x.data(), y.data()),
                        Contains("big.bin: token 150 at position 100034"));
  }
  SECTION("an HDF5 file recording a larger vocabulary than the model's") {
    write_h5(dir.file("gpt2.h5"), tokens, 50257, "gpt2");
    REQUIRE_THROWS_WITH(
        data::open_token_file(dir.file("gpt2.h5"), 256),
        Contains("gpt2.h5") && Contains("vocabulary of 50257 (gpt2)") && Contains("--vocab 50257"));
    CHECK(data::open_token_file(dir.file("gpt2.h5"), 50304)->size() == 3000);
  }
}

TEST_CASE("window permutation: a bijection, deterministic per (seed, epoch)", "[io]") {
  for (int64_t n : {1, 2, 3, 5, 7, 64, 1000, 4097, 100003}) {
    data::WindowPermutation p(n, 1337, 0);
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = p(i);
      REQUIRE(j >= 0);
      REQUIRE(j < n);
      REQUIRE(seen[j] == 0);
      seen[j] = 1;
    }
  }
  const int64_t n = 10007;
  data::WindowPermutation e0(n, 42, 0), again(n, 42, 0), e1(n, 42, 1), s2(n, 43, 0);
  int64_t same_again = 0, same_e1 = 0, same_s2 = 0, fixed = 0;
  for (int64_t i = 0; i < n; ++i) {
    same_again += e0(i) == again(i);
    same_e1 += e0(i) == e1(i);
    same_s2 += e0(i) == s2(i);
    fixed += e0(i) == i;
  }
  CHECK(same_again == n);
  // Independent permutations agree in about one place; allow a few.
  CHECK(same_e1 < 10);
  CHECK(same_s2 < 10);
  CHECK(fixed < 10);
  // Well spread: the first 100 outputs cover every tenth of the range.
  std::set<int64_t> tenths;
  for (int64_t i = 0; i < 100; ++i) tenths.insert(e0(i) * 10 / n);
  CHECK(tenths.size() == 10);
}

TEST_CASE("data set order: samples, epochs, and the position mapping", "[io]") {
  const auto tokens = pattern_tokens(1000, 256);
  auto source = data::memory_token_source(tokens, "mem");
  const int64_t T = 16, W = (1000 - 1) / 16;  // 62 windows
  SECTION("in order: sample i is window i mod W") {
    data::TokenDataset ds(source, T, false, 0);
    CHECK(ds.num_windows() == W);
    const auto loc = ds.locate(W + 5);
    CHECK(loc.epoch == 1);
    CHECK(loc.index == 5);
    CHECK(loc.window == 5);
    CHECK(loc.first_token == 80);
  }
  SECTION("shuffled: every epoch visits each window once, in a new order") {
    data::TokenDataset ds(source, T, true, 7);
    std::vector<int64_t> e0, e1;
    for (int64_t i = 0; i < W; ++i) e0.push_back(ds.locate(i).window);
    for (int64_t i = W; i < 2 * W; ++i) e1.push_back(ds.locate(i).window);
    CHECK(e0 != e1);
    std::sort(e0.begin(), e0.end());
    std::sort(e1.begin(), e1.end());
    for (int64_t w = 0; w < W; ++w) {
      REQUIRE(e0[w] == w);
      REQUIRE(e1[w] == w);
    }
    // The sample's tokens are the window's slice of the array.
    std::vector<int32_t> x(T), y(T);
    for (int64_t i : {0, 17, 61, 62, 200}) {
      ds.read_sample(i, x.data(), y.data());
      const int64_t f = ds.locate(i).first_token;
      CHECK(x == std::vector<int32_t>(tokens.begin() + f, tokens.begin() + f + T));
      CHECK(y == std::vector<int32_t>(tokens.begin() + f + 1, tokens.begin() + f + T + 1));
    }
  }
}

TEST_CASE("in-order batches are the contiguous token runs the built-in data set always used",
          "[io]") {
  // The previous loader's batch k started at token k*B*T (before any wrap) and row b held
  // tokens [k*B*T + b*T, ... + T + 1): the default run's batches must stay exactly these.
  const auto tokens = pattern_tokens(50000, 256);
  const int64_t B = 4, T = 64;
  data::TokenLoader loader(tokens, B, T);
  for (int64_t k : {0, 1, 7, 100, 190}) {
    auto [x, y] = loader.batch(k);
    const auto xs = x.to_vector<int32_t>(), ys = y.to_vector<int32_t>();
    const int64_t s = k * B * T;
    REQUIRE(s + B * T + 1 <= 50000);
    CHECK(xs == std::vector<int32_t>(tokens.begin() + s, tokens.begin() + s + B * T));
    CHECK(ys == std::vector<int32_t>(tokens.begin() + s + 1, tokens.begin() + s + B * T + 1));
  }
  CHECK(loader.position(3) == 12);
}

TEST_CASE("per-rank micro-batches read only their windows and equal the global batch", "[io]") {
  ScratchDir dir("ranks");
  const auto tokens = pattern_tokens(40000, 512);
  write_h5(dir.file("d_000.h5"), std::vector<int32_t>(tokens.begin(), tokens.begin() + 15000), 512);
  write_bin(dir.file("d_001.bin"), std::vector<int32_t>(tokens.begin() + 15000, tokens.end()));
  const int64_t B = 2, T = 32, steps = 3;
  for (int64_t dp : {1, 2, 4}) {
    for (int64_t m : {1, 3}) {
      // One process with the global batch dp * m * B ...
      data::TokenLoader global({data::open_token_source(dir.file("d_*"), 512), true, 99},
                               dp * m * B, T);
      for (int64_t step = 0; step < steps; ++step) {
        const auto gx = global.batch(step).first.to_vector<int32_t>();
        std::vector<int32_t> cat;
        int64_t read = 0;
        // ... and each rank's micro-batches, as trident-train indexes them.
        for (int64_t r = 0; r < dp; ++r) {
          auto counting =
              std::make_shared<CountingSource>(data::open_token_source(dir.file("d_*"), 512));
          data::TokenLoader rank_loader({counting, true, 99}, B, T);
          for (int64_t k = 0; k < m; ++k) {
            const auto x = rank_loader.batch(step * dp * m + r * m + k).first.to_vector<int32_t>();
            cat.insert(cat.end(), x.begin(), x.end());
            // Every row is a slice of the whole array at its window.
            const int64_t f =
                rank_loader.dataset().locate((step * dp * m + r * m + k) * B).first_token;
            REQUIRE(std::vector<int32_t>(x.begin(), x.begin() + T) ==
                    std::vector<int32_t>(tokens.begin() + f, tokens.begin() + f + T));
          }
          read += counting->tokens_read;
        }
        REQUIRE(cat == gx);
        CHECK(read == dp * m * B * (T + 1));  // windows only, never the whole data set
      }
    }
  }
}

TEST_CASE("llm.c .bin writer streams and refuses vocabularies past uint16", "[io]") {
  ScratchDir dir("binwriter");
  const auto tokens = pattern_tokens(70000, 50257);
  auto w = data::make_token_writer(dir.file("out.bin"), "bin", 50257, "gpt2");
  w->append(tokens.data(), 30000);
  w->append(tokens.data() + 30000, 40000);
  w->finish();
  const auto raw = trident::read_token_file(dir.file("out.bin"));
  CHECK(std::vector<int32_t>(raw.begin(), raw.end()) == tokens);
  REQUIRE_THROWS_WITH(data::make_token_writer(dir.file("big.bin"), "bin", 100000, "x"),
                      Contains("big.bin") && Contains("--format hdf5"));
  CHECK_FALSE(std::filesystem::exists(dir.file("big.bin")));
}
