// HDF5 token files: the token data sets trident-tokenize writes and trident-train reads.
//
// Layout (format_version 1, documented in the README's "Data formats" section):
//   /tokens   1-D dataset of token ids, uint16 little-endian when vocab_size <= 65536, else
//             uint32; chunked (kHdf5TokenChunk tokens a chunk) with a Fletcher-32 checksum per
//             chunk, so a corrupted chunk fails its read instead of feeding the model garbage.
//   attributes of /tokens: vocab_size (int64), tokenizer (string: "byte", "gpt2"),
//             num_tokens (int64, equal to the dataset's length), format_version (int64, 1),
//             eot_token (int64, only when documents are separated by one).
// Readers accept any 1-D integer dataset named "tokens" (8 to 64 bits, ids below 2^31;
// attributes found on the dataset or, for files written by other programs such as h5py, on the
// root group; missing ones read as unknown) and read
// hyperslabs [begin, begin + count), so a rank holds only the windows it trains on.
// Every HDF5 failure (a truncated file, a bad checksum, a missing dataset) becomes one
// trident::Error naming the file and HDF5's own reason.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace trident {

constexpr int64_t kHdf5TokenFormatVersion = 1;
constexpr int64_t kHdf5TokenChunk = 32768;  // tokens per chunk (64 KiB at uint16)

struct TokenFileMeta {
  int64_t num_tokens = 0;
  int64_t vocab_size = 0;  // every id is < vocab_size; 0 = not recorded
  std::string tokenizer;   // "byte", "gpt2", ...; empty = not recorded
  int64_t eot_token = -1;  // -1 = not recorded
  int64_t format_version = kHdf5TokenFormatVersion;
  int token_bytes = 2;  // bytes per stored id
};

// True when the file starts with the HDF5 signature "\x89HDF\r\n\x1a\n".
bool has_hdf5_signature(const std::string& path);

class Hdf5TokenReader {
 public:
  // Opens read-only (without file locking where the file system has none, as on Lustre) and
  // validates the dataset and attributes.
  explicit Hdf5TokenReader(const std::string& path);
  ~Hdf5TokenReader();
  Hdf5TokenReader(Hdf5TokenReader&&) noexcept;
  Hdf5TokenReader& operator=(Hdf5TokenReader&&) noexcept;

  const TokenFileMeta& meta() const { return meta_; }
  const std::string& path() const { return path_; }
  // Tokens [begin, begin + count) into out[0, count).
  void read(int64_t begin, int64_t count, int32_t* out) const;

 private:
  struct Handles;
  std::string path_;
  TokenFileMeta meta_;
  std::unique_ptr<Handles> h_;
};

// Streams tokens into "<path>.tmp.<pid>" and renames it to `path` in finish(); a writer
// destroyed before finish() removes its temporary file, so `path` never holds a partial file.
class Hdf5TokenWriter {
 public:
  Hdf5TokenWriter(const std::string& path, int64_t vocab_size, const std::string& tokenizer,
                  int64_t eot_token = -1);
  ~Hdf5TokenWriter();
  Hdf5TokenWriter(const Hdf5TokenWriter&) = delete;
  Hdf5TokenWriter& operator=(const Hdf5TokenWriter&) = delete;

  // Throws (naming the file) on an id outside [0, vocab_size).
  void append(const int32_t* tokens, int64_t count);
  void finish();
  int64_t num_tokens() const { return written_ + static_cast<int64_t>(pending_.size()); }

 private:
  void flush();
  struct Handles;
  std::string path_, tmp_;
  int64_t vocab_size_;
  std::string tokenizer_;
  int64_t eot_token_;
  int64_t written_ = 0;
  std::vector<uint32_t> pending_;
  std::unique_ptr<Handles> h_;
};

}  // namespace trident
