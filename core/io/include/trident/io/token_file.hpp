// llm.c token shards (.bin): the token data sets llm.c's dev/data scripts write.
//
// Layout: a header of 256 little-endian int32 (header[0] = magic 20240520, header[1] = version 1,
// header[2] = token count N, the rest zero), then N uint16 token ids; the file is exactly
// 1024 + 2N bytes. Readers validate the magic, the version and the size, and throw a
// trident::Error naming the file and the problem.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace trident {

constexpr int32_t kTokenFileMagic = 20240520;
constexpr int32_t kTokenFileVersion = 1;
constexpr int64_t kTokenFileHeaderBytes = 256 * 4;

struct TokenFileHeader {
  int32_t version = kTokenFileVersion;
  int64_t num_tokens = 0;
};

// Reads and validates the header (and the file size against the token count).
TokenFileHeader read_token_file_header(const std::string& path);
// All tokens of the file.
std::vector<uint16_t> read_token_file(const std::string& path);
// Tokens [begin, begin + count) of the file (one data-parallel rank's slice, say).
std::vector<uint16_t> read_token_file(const std::string& path, int64_t begin, int64_t count);

// Writes `tokens` as an llm.c shard, through "<path>.tmp.<pid>" renamed into place.
void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens);

// Throws when a token is >= vocab_size, naming `source` (a file name), the token and its
// position: "tokens.bin: token 50300 at position 17 is outside the model's vocabulary of 50257".
void check_tokens_in_vocab(const std::vector<uint16_t>& tokens, int64_t vocab_size,
                           const std::string& source);

}  // namespace trident
