// HDF5 token files through the hdf5.hpp wrapper, whose errors name the file and HDF5's own
// reason. See hdf5_tokens.hpp for the layout.
#include "trident/io/hdf5_tokens.hpp"

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/io/hdf5.hpp"

namespace trident {

bool has_hdf5_signature(const std::string& path) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, 8);
  return in.gcount() == 8 && std::memcmp(head, kSignature, 8) == 0;
}

// ---------------------------------------------------------------------------------------------
// Reader

struct Hdf5TokenReader::Handles {
  hdf5::File file;
  hdf5::Dataset tokens;  // open for the reader's life: reopening it per window costs too much
  std::vector<unsigned char> scratch;  // ids in the file's width, before widening
};

namespace {

hdf5::File open_token_file(const std::string& path) {
  {
    std::ifstream probe(path);
    TRIDENT_CHECK(probe.is_open(), path, ": cannot open: ", std::strerror(errno));
  }
  try {
    // Readers only read: no locks (Lustre and some NFS mounts have none, and every rank opens).
    return hdf5::File::open(path, hdf5::Locking::Off);
  } catch (const hdf5::Error& e) {
    throw Error(str_cat(path, ": cannot open as an HDF5 token file: ", e.reason(),
                        " (a truncated or corrupted file? re-create it with trident-tokenize)"));
  }
}

}  // namespace

Hdf5TokenReader::Hdf5TokenReader(const std::string& path) : path_(path) {
  hdf5::File file = open_token_file(path);
  TRIDENT_CHECK(file.has("tokens"), path,
                ": no dataset 'tokens' (an HDF5 token file holds its ids in /tokens; write one "
                "with trident-tokenize)");
  hdf5::Dataset tokens = file.open_dataset("tokens");
  const hdf5::DatasetInfo& info = tokens.info();
  TRIDENT_CHECK(hdf5::is_integer(info.elem), path,
                ": /tokens must hold integers (uint16 or uint32 token ids), not ",
                hdf5::elem_name(info.elem));
  TRIDENT_CHECK(info.shape.size() == 1, path, ": /tokens must be one-dimensional, it has ",
                info.shape.size(), " dimensions");
  meta_.token_bytes = static_cast<int>(hdf5::elem_size(info.elem));
  meta_.num_tokens = info.shape[0];

  // Attributes: on /tokens, or on the root group for files written by other programs.
  auto holder = [&](const char* key) -> const hdf5::Object* {
    if (tokens.has_attr(key)) return &tokens;
    if (file.has_attr(key)) return &file;
    return nullptr;
  };
  auto int_attr = [&](const char* key, int64_t* v) {
    const hdf5::Object* o = holder(key);
    if (o != nullptr) *v = o->attr_int(key);
    return o != nullptr;
  };
  int64_t recorded = 0;
  if (int_attr("format_version", &meta_.format_version)) {
    TRIDENT_CHECK(meta_.format_version == kHdf5TokenFormatVersion, path, ": format_version ",
                  meta_.format_version, " (this Trident reads version ", kHdf5TokenFormatVersion,
                  ")");
  }
  if (int_attr("num_tokens", &recorded)) {
    TRIDENT_CHECK(recorded == meta_.num_tokens, path, ": the num_tokens attribute says ", recorded,
                  " tokens but /tokens holds ", meta_.num_tokens,
                  " (an interrupted write? re-create the file)");
  }
  int_attr("vocab_size", &meta_.vocab_size);
  TRIDENT_CHECK(meta_.vocab_size >= 0, path, ": negative vocab_size ", meta_.vocab_size);
  int_attr("eot_token", &meta_.eot_token);
  if (const hdf5::Object* o = holder("tokenizer")) meta_.tokenizer = o->attr_string("tokenizer");

  h_ = std::make_unique<Handles>(Handles{std::move(file), std::move(tokens), {}});
}

Hdf5TokenReader::~Hdf5TokenReader() = default;
Hdf5TokenReader::Hdf5TokenReader(Hdf5TokenReader&&) noexcept = default;
Hdf5TokenReader& Hdf5TokenReader::operator=(Hdf5TokenReader&&) noexcept = default;

void Hdf5TokenReader::read(int64_t begin, int64_t count, int32_t* out) const {
  TRIDENT_CHECK(
      begin >= 0 && count >= 0 && begin <= meta_.num_tokens && count <= meta_.num_tokens - begin,
      path_, ": tokens [", begin, ", ", begin + count, ") are outside the file's ",
      meta_.num_tokens, " tokens");
  if (count == 0) return;
  // Read in the file's own width (HDF5's type conversion costs more than the read of a cached
  // chunk), then widen here; every id must fit a non-negative int32.
  const hdf5::Elem elem = h_->tokens.info().elem;
  const size_t width = hdf5::elem_size(elem);
  const bool in_place = width == 4;
  std::vector<unsigned char>& raw = h_->scratch;
  if (!in_place) raw.resize(width * static_cast<size_t>(count));
  try {
    h_->tokens.read_range(begin, count,
                          in_place ? static_cast<void*>(out) : static_cast<void*>(raw.data()));
  } catch (const hdf5::Error& e) {
    throw Error(
        str_cat(path_, ": reading tokens [", begin, ", ", begin + count, ") failed: ", e.reason(),
                " (the file is corrupted or truncated; re-create it with trident-tokenize)"));
  }
  auto widen = [&](auto tag) {
    using T = decltype(tag);
    const T* v =
        in_place ? reinterpret_cast<const T*>(out) : reinterpret_cast<const T*>(raw.data());
    for (int64_t i = 0; i < count; ++i) {
      const T t = v[i];
      if (t < 0 || static_cast<uint64_t>(t) > static_cast<uint64_t>(INT32_MAX)) {
        throw Error(
            str_cat(path_, ": token ", +t, " at position ", begin + i, " is not a valid token id"));
      }
      out[i] = static_cast<int32_t>(t);
    }
  };
  switch (elem) {
    case hdf5::Elem::I8:
      widen(int8_t{});
      break;
    case hdf5::Elem::U8:
      widen(uint8_t{});
      break;
    case hdf5::Elem::I16:
      widen(int16_t{});
      break;
    case hdf5::Elem::U16:
      widen(uint16_t{});
      break;
    case hdf5::Elem::I32:
      widen(int32_t{});
      break;
    case hdf5::Elem::U32:
      widen(uint32_t{});
      break;
    case hdf5::Elem::I64:
      widen(int64_t{});
      break;
    case hdf5::Elem::U64:
      widen(uint64_t{});
      break;
    case hdf5::Elem::F32:
    case hdf5::Elem::F64:
      break;  // refused when opened
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Hdf5TokenWriter::Handles {
  hdf5::File file;
  hdf5::Dataset tokens;
};

Hdf5TokenWriter::Hdf5TokenWriter(const std::string& path, int64_t vocab_size,
                                 const std::string& tokenizer, int64_t eot_token)
    : path_(path),
      tmp_(temporary_path_for(path)),
      vocab_size_(vocab_size),
      tokenizer_(tokenizer),
      eot_token_(eot_token) {
  TRIDENT_CHECK(vocab_size > 0 && vocab_size <= (int64_t(1) << 31), path, ": vocabulary size ",
                vocab_size, " must be in [1, 2^31]");
  TRIDENT_CHECK(eot_token < vocab_size, path, ": end-of-text token ", eot_token,
                " is outside the vocabulary of ", vocab_size);
  try {
    hdf5::File file = hdf5::File::create(tmp_);
    const hdf5::Elem elem = vocab_size <= 65536 ? hdf5::Elem::U16 : hdf5::Elem::U32;
    hdf5::Dataset tokens = file.create_appendable("tokens", elem, kHdf5TokenChunk);
    h_ = std::make_unique<Handles>(Handles{std::move(file), std::move(tokens)});
  } catch (...) {
    std::remove(tmp_.c_str());  // closed by now; the destructor will not run
    throw;
  }
}

Hdf5TokenWriter::~Hdf5TokenWriter() {
  if (!h_) return;  // finished
  h_.reset();
  std::remove(tmp_.c_str());
}

void Hdf5TokenWriter::append(const int32_t* tokens, int64_t count) {
  TRIDENT_CHECK(h_ != nullptr, path_, ": append after finish()");
  for (int64_t i = 0; i < count; ++i) {
    TRIDENT_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size_, path_, ": token ", tokens[i],
                  " at position ", num_tokens(), " is outside the vocabulary of ", vocab_size_);
    pending_.push_back(static_cast<uint32_t>(tokens[i]));
    if (pending_.size() >= 16 * kHdf5TokenChunk) flush();
  }
}

void Hdf5TokenWriter::flush() {
  if (pending_.empty()) return;
  const int64_t n = static_cast<int64_t>(pending_.size());
  h_->tokens.append(hdf5::Elem::U32, pending_.data(), n);  // HDF5 narrows to uint16 if stored so
  written_ += n;
  pending_.clear();
}

void Hdf5TokenWriter::finish() {
  TRIDENT_CHECK(h_ != nullptr, path_, ": finish() called twice");
  flush();
  const hdf5::Dataset& d = h_->tokens;
  d.set_attr("vocab_size", vocab_size_);
  d.set_attr_varlen("tokenizer", tokenizer_);
  d.set_attr("num_tokens", written_);
  d.set_attr("format_version", kHdf5TokenFormatVersion);
  if (eot_token_ >= 0) d.set_attr("eot_token", eot_token_);
  h_->tokens.close();
  h_->file.close();  // flushes: a full disk fails here
  h_.reset();
  commit_temporary_file(tmp_, path_);
}

}  // namespace trident
