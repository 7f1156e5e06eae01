// llm.c token shards: round trip, slices, and the errors for a wrong magic, a wrong version,
// truncation, trailing bytes and out-of-vocabulary tokens.
#include "trident/io/token_file.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io_test_util.hpp"
#include "trident/core/error.hpp"

using Catch::Matchers::Contains;
using trident::test::ScratchDir;

namespace {

// A token file from an explicit header (magic, version, count) and token payload.
void write_shard(const std::string& path, int32_t magic, int32_t version, int32_t count,
                 const std::vector<uint16_t>& tokens) {
  int32_t header[256] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(2 * tokens.size()));
}

std::vector<uint16_t> iota_tokens(size_t n) {
  std::vector<uint16_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<uint16_t>((i * 7919) % 65536);
  return t;
}

}  // namespace

TEST_CASE("token file round trip, header and slices", "[io]") {
  ScratchDir dir("tok_roundtrip");
  const std::string path = dir.file("shard.bin");
  const std::vector<uint16_t> tokens = iota_tokens(1000);
  trident::write_token_file(path, tokens);

  CHECK(std::filesystem::file_size(path) == 1024 + 2 * 1000);
  const trident::TokenFileHeader h = trident::read_token_file_header(path);
  CHECK(h.version == 1);
  CHECK(h.num_tokens == 1000);
  CHECK(trident::read_token_file(path) == tokens);
  CHECK(trident::read_token_file(path, 990, 10) ==
        std::vector<uint16_t>(tokens.begin() + 990, tokens.end()));
  CHECK(trident::read_token_file(path, 1000, 0).empty());
  REQUIRE_THROWS_WITH(trident::read_token_file(path, 995, 10),
                      Contains("shard.bin") && Contains("[995, 1005)") && Contains("1000 tokens"));

  trident::write_token_file(path, {});
  CHECK(trident::read_token_file(path).empty());
}

TEST_CASE("token file errors name the file and the problem", "[io]") {
  ScratchDir dir("tok_bad");
  const std::string path = dir.file("tokens.bin");

  SECTION("wrong magic") {
    write_shard(path, 12345, 1, 3, {1, 2, 3});
    REQUIRE_THROWS_WITH(
        trident::read_token_file(path),
        Contains("tokens.bin: bad magic number: expected 20240520") && Contains("found 12345"));
  }
  SECTION("an llm.c model checkpoint instead of tokens") {
    write_shard(path, 20240326, 3, 3, {1, 2, 3});
    REQUIRE_THROWS_WITH(trident::read_token_file(path),
                        Contains("found 20240326") && Contains("model checkpoint"));
  }
  SECTION("wrong version") {
    write_shard(path, 20240520, 2, 3, {1, 2, 3});
    REQUIRE_THROWS_WITH(trident::read_token_file_header(path),
                        Contains("tokens.bin") && Contains("unsupported version 2"));
  }
  SECTION("truncated") {
    write_shard(path, 20240520, 1, 100, iota_tokens(50));
    REQUIRE_THROWS_WITH(trident::read_token_file(path),
                        Contains("tokens.bin: truncated: the header says 100 tokens (200 bytes), "
                                 "the file holds 100 bytes"));
  }
  SECTION("bytes after the announced tokens") {
    write_shard(path, 20240520, 1, 10, iota_tokens(12));
    REQUIRE_THROWS_WITH(trident::read_token_file(path),
                        Contains("tokens.bin") && Contains("4 unexpected bytes"));
  }
  SECTION("shorter than the header") {
    trident::test::write_bytes(path, std::string(100, '\0'));
    REQUIRE_THROWS_WITH(trident::read_token_file(path), Contains("tokens.bin") &&
                                                            Contains("100 bytes") &&
                                                            Contains("1024-byte header"));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(trident::read_token_file(dir.file("absent.bin")),
                        Contains("absent.bin") && Contains("cannot open"));
  }
}

TEST_CASE("token vocabulary check names the token, its position and the vocabulary", "[io]") {
  std::vector<uint16_t> tokens(40, 11);
  trident::check_tokens_in_vocab(tokens, 50257, "tokens.bin");
  tokens[17] = 50300;
  REQUIRE_THROWS_WITH(trident::check_tokens_in_vocab(tokens, 50257, "tokens.bin"),
                      "tokens.bin: token 50300 at position 17 is outside the model's "
                      "vocabulary of 50257");
  tokens[17] = 50256;
  trident::check_tokens_in_vocab(tokens, 50257, "tokens.bin");
}

TEST_CASE("the tiny token fixture and its expected evaluation are consistent", "[io]") {
  const std::vector<uint16_t> tokens =
      trident::read_token_file(TRIDENT_FIXTURE_DIR "/tiny_tokens.bin");
  CHECK(tokens.size() == 200);
  trident::check_tokens_in_vocab(tokens, 67, "tiny_tokens.bin");

  std::ifstream in(TRIDENT_FIXTURE_DIR "/tiny_eval.json");
  const nlohmann::json eval = nlohmann::json::parse(in);
  const int64_t T = eval.at("seq_len").get<int64_t>();
  const int64_t windows = eval.at("windows").get<int64_t>();
  CHECK(T == 16);
  CHECK(windows == 4);
  CHECK(int64_t(tokens.size()) >= windows * T + 1);
  double mean = 0.0;
  for (const auto& l : eval.at("window_losses")) mean += l.get<double>() / double(windows);
  CHECK(eval.at("mean_loss").get<double>() == Approx(mean).epsilon(1e-5));
}
