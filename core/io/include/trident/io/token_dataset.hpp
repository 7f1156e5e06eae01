// Token data sets for language-model training: where the tokens come from (a TokenSource: an
// HDF5 token file, an llm.c .bin shard, shards of either kind concatenated, a slice of another
// source, or memory) and the order their windows are read in (a TokenDataset).
//
// Sources are random-access: read(begin, count) fetches tokens [begin, begin + count) with an
// HDF5 hyperslab read or a pread of the .bin shard, so a rank holds only the windows it trains
// on, never the whole data set. A source opened with the model's vocabulary checks every token
// it reads against it and names the file and position of an offender.
//
// Windows and order (sequence length T, a source of N tokens):
//   window w        = tokens [w*T, w*T + T + 1): inputs its first T, targets its last T;
//   windows         W = (N - 1) / T (stride T: neighbouring windows share one token);
//   sample i        = window order_e(i mod W) of epoch e = i / W, where order_e is the identity
//                     without shuffling and, with shuffling, the permutation of [0, W) drawn
//                     from (seed, e) by WindowPermutation (no O(W) table);
//   data position   = samples consumed, one int64: a run that consumed p samples resumes at
//                     sample p, whatever its layout.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace trident::data {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Tokens [begin, begin + count) into out[0, count); throws naming the file on a read error or
  // (for sources opened with a vocabulary) a token outside it. Not thread-safe: one reader.
  virtual void read(int64_t begin, int64_t count, int32_t* out) const = 0;
  // The file (or "first ... last (K shards)") for messages.
  virtual std::string name() const = 0;
  // What the files record: the vocabulary size (0 = unknown), the tokenizer ("" = unknown).
  virtual int64_t recorded_vocab_size() const { return 0; }
  virtual std::string tokenizer() const { return ""; }
  // Closes file handles until the next read (a glob of many shards keeps a few open at a time).
  virtual void release() const {}
};

using TokenSourcePtr = std::shared_ptr<const TokenSource>;

// Expands a --data value: a comma-separated list of paths and globs ("dir/train_*.bin"), each
// glob's matches sorted by name, the list kept in the order given. A glob that matches nothing
// or a missing file is an error naming it.
std::vector<std::string> expand_token_paths(const std::string& spec);

// One token file, HDF5 (by its signature) or llm.c .bin. `vocab_size` > 0 checks every token
// read against it, and refuses a file whose recorded vocabulary is larger.
TokenSourcePtr open_token_file(const std::string& path, int64_t vocab_size = 0);
// Every file of expand_token_paths(spec), concatenated in that order (shards must agree on the
// tokenizer they record).
TokenSourcePtr open_token_source(const std::string& spec, int64_t vocab_size = 0);
// Tokens in memory (the built-in data set, tests), checked against `vocab_size` when > 0.
TokenSourcePtr memory_token_source(std::vector<int32_t> tokens, std::string name,
                                   int64_t vocab_size = 0);
// Tokens [begin, end) of `source`.
TokenSourcePtr slice_token_source(TokenSourcePtr source, int64_t begin, int64_t end);

// Reads a source once at open so a bad token stops the job before training: every token when
// it holds at most `full_scan_limit` tokens (streamed in blocks), else its first and last 64Ki
// tokens and 16 blocks of 4096 spread over it (the windows read later are checked as read).
constexpr int64_t kFullScanTokens = int64_t(64) << 20;
void verify_token_source(const TokenSource& source, int64_t full_scan_limit = kFullScanTokens);

// A pseudo-random bijection of [0, n) keyed by (seed, epoch): a 6-round Feistel network on the
// smallest even number of bits covering n, walked until it lands inside [0, n). O(1) memory,
// a few hashes per call.
class WindowPermutation {
 public:
  WindowPermutation(int64_t n, uint64_t seed, uint64_t epoch);
  int64_t operator()(int64_t i) const;
  int64_t size() const { return n_; }

 private:
  uint64_t encrypt(uint64_t x) const;
  int64_t n_;
  int half_bits_;
  uint64_t mask_;
  uint64_t round_keys_[6];
};

struct SampleLocation {
  int64_t epoch = 0;        // sample / num_windows
  int64_t index = 0;        // sample mod num_windows: the position inside the epoch
  int64_t window = 0;       // the window read
  int64_t first_token = 0;  // window * seq
};

class TokenDataset {
 public:
  TokenDataset(TokenSourcePtr source, int64_t seq, bool shuffle, uint64_t seed);
  int64_t seq() const { return seq_; }
  int64_t num_windows() const { return windows_; }
  bool shuffled() const { return shuffle_; }
  const TokenSource& source() const { return *source_; }
  SampleLocation locate(int64_t sample) const;
  // Inputs x[0, T) and targets y[0, T) of `sample` (any sample >= 0: epochs repeat).
  void read_sample(int64_t sample, int32_t* x, int32_t* y) const;

 private:
  TokenSourcePtr source_;
  int64_t seq_, windows_;
  bool shuffle_;
  uint64_t seed_;
  mutable std::vector<int32_t> window_;  // scratch for one window of seq + 1 tokens
};

// Streams tokens to a new file, HDF5 ("hdf5") or llm.c .bin ("bin", uint16 ids, vocabulary of
// at most 65536), through a temporary file renamed into place by finish().
class TokenWriter {
 public:
  virtual ~TokenWriter() = default;
  virtual void append(const int32_t* tokens, int64_t count) = 0;
  virtual void finish() = 0;
  virtual int64_t num_tokens() const = 0;
};
std::unique_ptr<TokenWriter> make_token_writer(const std::string& path, const std::string& format,
                                               int64_t vocab_size, const std::string& tokenizer,
                                               int64_t eot_token = -1);

}  // namespace trident::data
