#include "trident/io/token_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "llm.c token files are little-endian; this reader assumes a little-endian host");

namespace trident {
namespace {

constexpr int32_t kLlmcModelMagic = 20240326;  // llm.c's model checkpoint, a common mix-up

std::ifstream open_or_throw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TRIDENT_CHECK(in.is_open(), path, ": cannot open: ", std::strerror(errno));
  return in;
}

TokenFileHeader read_header(std::ifstream& in, const std::string& path) {
  in.seekg(0, std::ios::end);
  const int64_t file_size = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  TRIDENT_CHECK(file_size >= kTokenFileHeaderBytes, path, ": not an llm.c token file: ", file_size,
                " bytes, shorter than the ", kTokenFileHeaderBytes, "-byte header");
  int32_t header[256];
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  TRIDENT_CHECK(in.good(), path, ": cannot read the header");
  TRIDENT_CHECK(header[0] != kLlmcModelMagic, path, ": bad magic number: expected ",
                kTokenFileMagic, " (llm.c token file), found ", header[0],
                ", which is an llm.c model checkpoint, not tokens");
  TRIDENT_CHECK(header[0] == kTokenFileMagic, path, ": bad magic number: expected ",
                kTokenFileMagic, " (llm.c token file), found ", header[0]);
  TRIDENT_CHECK(header[1] == kTokenFileVersion, path, ": unsupported version ", header[1],
                " (Trident reads version ", kTokenFileVersion, ", uint16 tokens)");
  TRIDENT_CHECK(header[2] >= 0, path, ": negative token count ", header[2], " in the header");
  TokenFileHeader h;
  h.version = header[1];
  h.num_tokens = header[2];
  const int64_t data_bytes = file_size - kTokenFileHeaderBytes;
  TRIDENT_CHECK(data_bytes >= 2 * h.num_tokens, path, ": truncated: the header says ", h.num_tokens,
                " tokens (", 2 * h.num_tokens, " bytes), the file holds ", data_bytes,
                " bytes after the header");
  TRIDENT_CHECK(data_bytes == 2 * h.num_tokens, path, ": ", data_bytes - 2 * h.num_tokens,
                " unexpected bytes after the ", h.num_tokens,
                " tokens the header announces (wrong count in the header?)");
  return h;
}

}  // namespace

TokenFileHeader read_token_file_header(const std::string& path) {
  std::ifstream in = open_or_throw(path);
  return read_header(in, path);
}

std::vector<uint16_t> read_token_file(const std::string& path) {
  std::ifstream in = open_or_throw(path);
  const TokenFileHeader h = read_header(in, path);
  std::vector<uint16_t> tokens(static_cast<size_t>(h.num_tokens));
  in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(2 * h.num_tokens));
  TRIDENT_CHECK(in.good() || h.num_tokens == 0, path, ": reading ", h.num_tokens, " tokens failed");
  return tokens;
}

std::vector<uint16_t> read_token_file(const std::string& path, int64_t begin, int64_t count) {
  std::ifstream in = open_or_throw(path);
  const TokenFileHeader h = read_header(in, path);
  TRIDENT_CHECK(begin >= 0 && count >= 0 && begin <= h.num_tokens && count <= h.num_tokens - begin,
                path, ": tokens [", begin, ", ", begin + count, ") are outside the file's ",
                h.num_tokens, " tokens");
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  if (count == 0) return tokens;
  in.seekg(kTokenFileHeaderBytes + 2 * begin);
  in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(2 * count));
  TRIDENT_CHECK(in.good(), path, ": reading tokens [", begin, ", ", begin + count, ") failed");
  return tokens;
}

void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens) {
  TRIDENT_CHECK(tokens.size() <= size_t(std::numeric_limits<int32_t>::max()), path, ": ",
                tokens.size(), " tokens do not fit the int32 count of an llm.c token file");
  int32_t header[256] = {};
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    out.write(reinterpret_cast<const char*>(tokens.data()),
              static_cast<std::streamsize>(2 * tokens.size()));
  });
}

void check_tokens_in_vocab(const std::vector<uint16_t>& tokens, int64_t vocab_size,
                           const std::string& source) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    TRIDENT_CHECK(tokens[i] < vocab_size, source, ": token ", tokens[i], " at position ", i,
                  " is outside the model's vocabulary of ", vocab_size);
  }
}

}  // namespace trident
