// Token sources (HDF5, llm.c .bin, concatenated shards, slices, memory), the per-epoch window
// permutation, and streaming token writers. See token_dataset.hpp for the window/order rule.
#include "trident/io/token_dataset.hpp"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/core/rng.hpp"
#include "trident/io/hdf5_tokens.hpp"
#include "trident/io/token_file.hpp"

namespace trident::data {
namespace {

// Same wording as check_tokens_in_vocab (token_file.hpp), with the position inside the file.
void check_in_vocab(const int32_t* t, int64_t count, int64_t first, int64_t vocab,
                    const std::string& name) {
  if (vocab <= 0) return;
  for (int64_t i = 0; i < count; ++i) {
    TRIDENT_CHECK(t[i] >= 0 && t[i] < vocab, name, ": token ", t[i], " at position ", first + i,
                  " is outside the model's vocabulary of ", vocab);
  }
}

void check_range(int64_t begin, int64_t count, int64_t size, const std::string& name) {
  TRIDENT_CHECK(begin >= 0 && count >= 0 && begin <= size && count <= size - begin, name,
                ": tokens [", begin, ", ", begin + count, ") are outside its ", size, " tokens");
}

// A file descriptor, closed at scope exit.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() { reset(); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor& operator=(FileDescriptor&& o) noexcept {
    reset();
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// An llm.c .bin shard read with pread; the header (magic, version, size) is validated at open.
class BinShardSource final : public TokenSource {
 public:
  BinShardSource(std::string path, int64_t vocab)
      : path_(std::move(path)), vocab_(vocab), n_(read_token_file_header(path_).num_tokens) {}
  int64_t size() const override { return n_; }
  std::string name() const override { return path_; }
  void release() const override { fd_.reset(); }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    check_range(begin, count, n_, path_);
    if (count == 0) return;
    if (fd_.get() < 0) {
      fd_ = FileDescriptor(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      TRIDENT_CHECK(fd_.get() >= 0, path_, ": cannot open: ", std::strerror(errno));
    }
    buf_.resize(static_cast<size_t>(count));
    char* p = reinterpret_cast<char*>(buf_.data());
    size_t want = static_cast<size_t>(2 * count);
    off_t at = static_cast<off_t>(kTokenFileHeaderBytes + 2 * begin);
    while (want > 0) {
      const ssize_t got = ::pread(fd_.get(), p, want, at);
      if (got < 0 && errno == EINTR) continue;
      TRIDENT_CHECK(
          got > 0, path_, ": reading tokens [", begin, ", ", begin + count, ") failed: ",
          got == 0 ? "unexpected end of file (truncated while open?)" : std::strerror(errno));
      p += got, want -= static_cast<size_t>(got), at += got;
    }
    for (int64_t i = 0; i < count; ++i) out[i] = buf_[static_cast<size_t>(i)];
    check_in_vocab(out, count, begin, vocab_, path_);
  }

 private:
  std::string path_;
  int64_t vocab_, n_;
  mutable FileDescriptor fd_;
  mutable std::vector<uint16_t> buf_;
};

// An HDF5 token file; the reader is reopened on demand after release().
class Hdf5Source final : public TokenSource {
 public:
  Hdf5Source(std::string path, int64_t vocab) : path_(std::move(path)), vocab_(vocab) {
    reader_ = std::make_unique<Hdf5TokenReader>(path_);
    meta_ = reader_->meta();
    if (vocab_ > 0 && meta_.vocab_size > vocab_) {
      throw Error(str_cat(path_, ": tokenized with a vocabulary of ", meta_.vocab_size,
                          meta_.tokenizer.empty() ? "" : " (" + meta_.tokenizer + ")",
                          ", larger than the model's vocabulary of ", vocab_, " (use --vocab ",
                          meta_.vocab_size, " or re-tokenize)"));
    }
  }
  int64_t size() const override { return meta_.num_tokens; }
  std::string name() const override { return path_; }
  int64_t recorded_vocab_size() const override { return meta_.vocab_size; }
  std::string tokenizer() const override { return meta_.tokenizer; }
  void release() const override { reader_.reset(); }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    check_range(begin, count, meta_.num_tokens, path_);
    if (!reader_) reader_ = std::make_unique<Hdf5TokenReader>(path_);
    reader_->read(begin, count, out);
    check_in_vocab(out, count, begin, vocab_, path_);
  }

 private:
  std::string path_;
  int64_t vocab_;
  TokenFileMeta meta_;
  mutable std::unique_ptr<Hdf5TokenReader> reader_;
};

// Shards end to end; at most kMaxOpen of them hold open handles.
class ConcatSource final : public TokenSource {
 public:
  static constexpr size_t kMaxOpen = 32;
  explicit ConcatSource(std::vector<TokenSourcePtr> parts) : parts_(std::move(parts)) {
    starts_.push_back(0);
    for (const auto& p : parts_) starts_.push_back(starts_.back() + p->size());
    for (const auto& p : parts_) {
      vocab_ = std::max(vocab_, p->recorded_vocab_size());
      const std::string t = p->tokenizer();
      if (t.empty()) continue;
      TRIDENT_CHECK(tokenizer_.empty() || tokenizer_ == t, p->name(), " was tokenized with '", t,
                    "' but ", first_with_tokenizer_, " with '", tokenizer_,
                    "': shards of one data set must share their tokenizer");
      tokenizer_ = t;
      if (first_with_tokenizer_.empty()) first_with_tokenizer_ = p->name();
    }
  }
  int64_t size() const override { return starts_.back(); }
  std::string name() const override {
    return str_cat(parts_.front()->name(), " ... ", parts_.back()->name(), " (", parts_.size(),
                   " shards)");
  }
  int64_t recorded_vocab_size() const override { return vocab_; }
  std::string tokenizer() const override { return tokenizer_; }
  void release() const override {
    for (size_t i : open_) parts_[i]->release();
    open_.clear();
  }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    check_range(begin, count, size(), name());
    size_t i = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) -
                                   starts_.begin()) -
               1;
    while (count > 0) {
      const int64_t local = begin - starts_[i];
      const int64_t take = std::min(count, starts_[i + 1] - begin);
      if (take > 0) {
        touch(i);
        parts_[i]->read(local, take, out);
      }
      out += take, begin += take, count -= take, ++i;
    }
  }

 private:
  void touch(size_t i) const {
    auto it = std::find(open_.begin(), open_.end(), i);
    if (it != open_.end()) open_.erase(it);
    open_.push_back(i);
    if (open_.size() > kMaxOpen) {
      parts_[open_.front()]->release();
      open_.pop_front();
    }
  }
  std::vector<TokenSourcePtr> parts_;
  std::vector<int64_t> starts_;
  int64_t vocab_ = 0;
  std::string tokenizer_, first_with_tokenizer_;
  mutable std::deque<size_t> open_;
};

class SliceSource final : public TokenSource {
 public:
  SliceSource(TokenSourcePtr base, int64_t begin, int64_t end)
      : base_(std::move(base)), begin_(begin), end_(end) {
    TRIDENT_CHECK(0 <= begin && begin <= end && end <= base_->size(), base_->name(), ": slice [",
                  begin, ", ", end, ") is outside its ", base_->size(), " tokens");
  }
  int64_t size() const override { return end_ - begin_; }
  std::string name() const override { return base_->name(); }
  int64_t recorded_vocab_size() const override { return base_->recorded_vocab_size(); }
  std::string tokenizer() const override { return base_->tokenizer(); }
  void release() const override { base_->release(); }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    check_range(begin, count, size(), name());
    base_->read(begin_ + begin, count, out);
  }

 private:
  TokenSourcePtr base_;
  int64_t begin_, end_;
};

class MemorySource final : public TokenSource {
 public:
  MemorySource(std::vector<int32_t> t, std::string name, int64_t vocab)
      : tokens_(std::move(t)), name_(std::move(name)), vocab_(vocab) {}
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::string name() const override { return name_; }
  void read(int64_t begin, int64_t count, int32_t* out) const override {
    check_range(begin, count, size(), name_);
    std::copy_n(tokens_.data() + begin, count, out);
    check_in_vocab(out, count, begin, vocab_, name_);
  }

 private:
  std::vector<int32_t> tokens_;
  std::string name_;
  int64_t vocab_;
};

bool has_glob_chars(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  TRIDENT_CHECK(rc == 0 || rc == GLOB_NOMATCH, pattern, ": cannot expand the pattern (glob error ",
                rc, ")");
  TRIDENT_CHECK(!out.empty(), pattern, ": no file matches this pattern");
  std::sort(out.begin(), out.end());  // byte order, the same under every locale
  return out;
}

// llm.c .bin through a temporary file: a zero header, the ids, then the header with the count.
class BinTokenWriter final : public TokenWriter {
 public:
  BinTokenWriter(std::string path, int64_t vocab)
      : path_(std::move(path)), tmp_(temporary_path_for(path_)), vocab_(vocab) {
    TRIDENT_CHECK(vocab > 0 && vocab <= 65536, path_,
                  ": an llm.c .bin file holds uint16 ids: a "
                  "vocabulary of ",
                  vocab, " does not fit (use --format hdf5)");
    out_.open(tmp_, std::ios::binary | std::ios::trunc);
    TRIDENT_CHECK(out_.is_open(), path_, ": cannot create ", tmp_, ": ", std::strerror(errno));
    const std::vector<char> zeros(kTokenFileHeaderBytes, 0);
    out_.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  ~BinTokenWriter() override {
    if (!done_) {
      out_.close();
      std::remove(tmp_.c_str());
    }
  }
  void append(const int32_t* t, int64_t count) override {
    buf_.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      TRIDENT_CHECK(t[i] >= 0 && t[i] < vocab_, path_, ": token ", t[i], " at position ", n_ + i,
                    " is outside the vocabulary of ", vocab_);
      buf_[static_cast<size_t>(i)] = static_cast<uint16_t>(t[i]);
    }
    out_.write(reinterpret_cast<const char*>(buf_.data()), static_cast<std::streamsize>(2 * count));
    TRIDENT_CHECK(out_.good(), path_, ": writing ", tmp_, " failed (disk full?)");
    n_ += count;
    TRIDENT_CHECK(n_ <= std::numeric_limits<int32_t>::max(), path_, ": ", n_,
                  " tokens do not fit the int32 count of an llm.c .bin file (use --format hdf5 "
                  "or more shards)");
  }
  void finish() override {
    int32_t header[256] = {};
    header[0] = kTokenFileMagic;
    header[1] = kTokenFileVersion;
    header[2] = static_cast<int32_t>(n_);
    out_.seekp(0);
    out_.write(reinterpret_cast<const char*>(header), sizeof(header));
    out_.close();
    TRIDENT_CHECK(!out_.fail(), path_, ": writing ", tmp_, " failed (disk full?)");
    done_ = true;
    commit_temporary_file(tmp_, path_);
  }
  int64_t num_tokens() const override { return n_; }

 private:
  std::string path_, tmp_;
  int64_t vocab_, n_ = 0;
  std::ofstream out_;
  std::vector<uint16_t> buf_;
  bool done_ = false;
};

class Hdf5Writer final : public TokenWriter {
 public:
  Hdf5Writer(const std::string& path, int64_t vocab, const std::string& tokenizer, int64_t eot)
      : w_(path, vocab, tokenizer, eot) {}
  void append(const int32_t* t, int64_t count) override { w_.append(t, count); }
  void finish() override { w_.finish(); }
  int64_t num_tokens() const override { return w_.num_tokens(); }

 private:
  Hdf5TokenWriter w_;
};

}  // namespace

std::vector<std::string> expand_token_paths(const std::string& spec) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    if (has_glob_chars(item) && !std::filesystem::exists(item)) {
      for (auto& p : glob_sorted(item)) out.push_back(std::move(p));
    } else {
      out.push_back(item);
    }
  }
  TRIDENT_CHECK(!out.empty(), "no token file given ('", spec, "')");
  return out;
}

TokenSourcePtr open_token_file(const std::string& path, int64_t vocab_size) {
  std::error_code ec;
  TRIDENT_CHECK(std::filesystem::is_regular_file(path, ec), path, ": ",
                std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
  if (has_hdf5_signature(path)) return std::make_shared<Hdf5Source>(path, vocab_size);
  const std::string ext = std::filesystem::path(path).extension().string();
  TRIDENT_CHECK(ext != ".h5" && ext != ".hdf5", path,
                ": not an HDF5 file (no HDF5 signature at its start): corrupted, or not written "
                "by trident-tokenize");
  return std::make_shared<BinShardSource>(path, vocab_size);
}

TokenSourcePtr open_token_source(const std::string& spec, int64_t vocab_size) {
  const std::vector<std::string> paths = expand_token_paths(spec);
  if (paths.size() == 1) return open_token_file(paths[0], vocab_size);
  std::vector<TokenSourcePtr> parts;
  for (const auto& p : paths) {
    parts.push_back(open_token_file(p, vocab_size));
    parts.back()->release();
  }
  return std::make_shared<ConcatSource>(std::move(parts));
}

TokenSourcePtr memory_token_source(std::vector<int32_t> tokens, std::string name,
                                   int64_t vocab_size) {
  return std::make_shared<MemorySource>(std::move(tokens), std::move(name), vocab_size);
}

TokenSourcePtr slice_token_source(TokenSourcePtr source, int64_t begin, int64_t end) {
  return std::make_shared<SliceSource>(std::move(source), begin, end);
}

void verify_token_source(const TokenSource& source, int64_t full_scan_limit) {
  const int64_t n = source.size();
  std::vector<int32_t> buf;
  auto scan = [&](int64_t begin, int64_t count) {
    count = std::min(count, n - begin);
    if (count <= 0) return;
    buf.resize(static_cast<size_t>(count));
    source.read(begin, count, buf.data());
  };
  if (n <= full_scan_limit) {
    for (int64_t b = 0; b < n; b += int64_t(1) << 20) scan(b, int64_t(1) << 20);
  } else {
    scan(0, 65536);
    scan(n - 65536, 65536);
    for (int k = 0; k < 16; ++k) scan(n / 16 * k + n / 32, 4096);
  }
  source.release();
}

// ---------------------------------------------------------------------------------------------
// Window order

WindowPermutation::WindowPermutation(int64_t n, uint64_t seed, uint64_t epoch) : n_(n) {
  TRIDENT_CHECK(n > 0, "a permutation needs at least one element (got ", n, ")");
  int bits = 0;
  while (bits < 62 && (int64_t(1) << bits) < n) ++bits;
  half_bits_ = std::max(1, (bits + 1) / 2);
  mask_ = (uint64_t(1) << half_bits_) - 1;
  const uint64_t key = counter_hash(counter_hash(seed, 0x5348554646ull), epoch);  // "SHUFF"
  for (uint64_t r = 0; r < 6; ++r) round_keys_[r] = counter_hash(key, r);
}

uint64_t WindowPermutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & mask_;
  for (uint64_t k : round_keys_) {
    const uint64_t next = left ^ (counter_hash(k, right) & mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

int64_t WindowPermutation::operator()(int64_t i) const {
  TRIDENT_CHECK(i >= 0 && i < n_, "permutation index ", i, " is outside [0, ", n_, ")");
  // Cycle walking: the Feistel network permutes [0, 4^half) >= n; repeating it from i until it
  // lands below n stays a bijection of [0, n) (expected < 4 rounds, since 4^half < 4n).
  uint64_t y = encrypt(static_cast<uint64_t>(i));
  while (y >= static_cast<uint64_t>(n_)) y = encrypt(y);
  return static_cast<int64_t>(y);
}

TokenDataset::TokenDataset(TokenSourcePtr source, int64_t seq, bool shuffle, uint64_t seed)
    : source_(std::move(source)), seq_(seq), shuffle_(shuffle), seed_(seed) {
  TRIDENT_CHECK(seq > 0, "the sequence length must be positive (got ", seq, ")");
  const int64_t n = source_->size();
  TRIDENT_CHECK(n >= seq + 1, source_->name(), " holds ", n, " tokens, fewer than one window of ",
                seq, " + 1 (lower --seq or give more data)");
  windows_ = (n - 1) / seq;
}

SampleLocation TokenDataset::locate(int64_t sample) const {
  TRIDENT_CHECK(sample >= 0, "sample index ", sample, " is negative");
  SampleLocation s;
  s.epoch = sample / windows_;
  s.index = sample % windows_;
  s.window = shuffle_ ? WindowPermutation(windows_, seed_, static_cast<uint64_t>(s.epoch))(s.index)
                      : s.index;
  s.first_token = s.window * seq_;
  return s;
}

void TokenDataset::read_sample(int64_t sample, int32_t* x, int32_t* y) const {
  const SampleLocation s = locate(sample);
  window_.resize(static_cast<size_t>(seq_ + 1));
  source_->read(s.first_token, seq_ + 1, window_.data());
  std::copy_n(window_.data(), seq_, x);
  std::copy_n(window_.data() + 1, seq_, y);
}

std::unique_ptr<TokenWriter> make_token_writer(const std::string& path, const std::string& format,
                                               int64_t vocab_size, const std::string& tokenizer,
                                               int64_t eot_token) {
  if (format == "bin") return std::make_unique<BinTokenWriter>(path, vocab_size);
  TRIDENT_CHECK(format == "hdf5", "unknown token file format '", format, "' (hdf5 or bin)");
  return std::make_unique<Hdf5Writer>(path, vocab_size, tokenizer, eot_token);
}

}  // namespace trident::data
