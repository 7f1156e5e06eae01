// HDF5 token files through HDF5's C API: RAII handles, HDF5's error stack turned into one
// trident::Error naming the file. See hdf5_tokens.hpp for the layout.
#include "trident/core/hdf5_tokens.hpp"

#include <hdf5.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

namespace trident {
namespace {

// One HDF5 identifier, closed by its own close function.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports whether HDF5 accepted it (a file close flushes, so it can fail).
  bool close() {
    const bool ok = id_ < 0 || close_(id_) >= 0;
    id_ = -1;
    return ok;
  }
  void reset() {
    if (id_ >= 0) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// Silences HDF5's automatic printing of its error stack while Trident turns failures into
// exceptions; restores the previous handler at scope exit.
class Hdf5Quiet {
 public:
  Hdf5Quiet() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~Hdf5Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  Hdf5Quiet(const Hdf5Quiet&) = delete;
  Hdf5Quiet& operator=(const Hdf5Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

herr_t collect_error(unsigned, const H5E_error2_t* err, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (err->desc == nullptr || err->desc[0] == '\0') return 0;
  if (s->find(err->desc) != std::string::npos) return 0;
  if (!s->empty()) *s += ": ";
  *s += err->desc;
  return 0;
}

// HDF5's error stack, outermost call first ("unable to open file: ... truncated file: eof =
// 1000, ..."), then cleared.
std::string hdf5_reason() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "HDF5 reported no reason" : s;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(str_cat(path, ": ", what, ": ", hdf5_reason()));
}

hid_t check_id(hid_t id, const std::string& path, const std::string& what) {
  if (id < 0) fail(path, what);
  return id;
}

void check_ok(herr_t rc, const std::string& path, const std::string& what) {
  if (rc < 0) fail(path, what);
}

// Integer attribute `name` of `obj`; false when absent.
bool read_int_attribute(hid_t obj, const char* name, const std::string& path, int64_t* value) {
  if (H5Aexists(obj, name) <= 0) return false;
  H5Handle a(
      check_id(H5Aopen(obj, name, H5P_DEFAULT), path, str_cat("cannot open attribute ", name)),
      H5Aclose);
  H5Handle type(H5Aget_type(a.get()), H5Tclose);
  H5Handle space(H5Aget_space(a.get()), H5Sclose);
  TRIDENT_CHECK(
      H5Tget_class(type.get()) == H5T_INTEGER && H5Sget_simple_extent_npoints(space.get()) == 1,
      path, ": attribute ", name, " must be one integer");
  check_ok(H5Aread(a.get(), H5T_NATIVE_INT64, value), path,
           str_cat("cannot read attribute ", name));
  return true;
}

// String attribute `name` (variable- or fixed-length); false when absent.
bool read_string_attribute(hid_t obj, const char* name, const std::string& path,
                           std::string* value) {
  if (H5Aexists(obj, name) <= 0) return false;
  H5Handle a(
      check_id(H5Aopen(obj, name, H5P_DEFAULT), path, str_cat("cannot open attribute ", name)),
      H5Aclose);
  H5Handle type(H5Aget_type(a.get()), H5Tclose);
  TRIDENT_CHECK(H5Tget_class(type.get()) == H5T_STRING, path, ": attribute ", name,
                " must be a string");
  H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* s = nullptr;
    check_ok(H5Aread(a.get(), mem.get(), &s), path, str_cat("cannot read attribute ", name));
    *value = s ? s : "";
    H5free_memory(s);
  } else {
    const size_t n = H5Tget_size(type.get());
    H5Tset_size(mem.get(), n);
    std::string buf(n, '\0');
    check_ok(H5Aread(a.get(), mem.get(), buf.data()), path,
             str_cat("cannot read attribute ", name));
    buf.resize(std::strlen(buf.c_str()));
    while (!buf.empty() && buf.back() == ' ') buf.pop_back();
    *value = buf;
  }
  return true;
}

void write_int_attribute(hid_t obj, const char* name, int64_t v, const std::string& path) {
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle a(check_id(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                      path, str_cat("cannot create attribute ", name)),
             H5Aclose);
  check_ok(H5Awrite(a.get(), H5T_NATIVE_INT64, &v), path, str_cat("cannot write attribute ", name));
}

void write_string_attribute(hid_t obj, const char* name, const std::string& v,
                            const std::string& path) {
  H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle a(check_id(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                      path, str_cat("cannot create attribute ", name)),
             H5Aclose);
  const char* p = v.c_str();
  check_ok(H5Awrite(a.get(), type.get(), &p), path, str_cat("cannot write attribute ", name));
}

}  // namespace

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
  H5Handle file, dset;
  bool is_signed = false;
  hid_t memory_type = -1;  // the native integer of the stored width and sign (a library constant)
  std::vector<unsigned char> scratch;
};

Hdf5TokenReader::Hdf5TokenReader(const std::string& path)
    : path_(path), h_(std::make_unique<Handles>()) {
  Hdf5Quiet quiet;
  {
    std::ifstream probe(path);
    TRIDENT_CHECK(probe.is_open(), path, ": cannot open: ", std::strerror(errno));
  }
  H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Readers only read: no locks (Lustre and some NFS mounts have none, and every rank opens).
  H5Pset_file_locking(fapl.get(), false, true);
  h_->file = H5Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!h_->file.valid()) {
    throw Error(str_cat(path, ": cannot open as an HDF5 token file: ", hdf5_reason(),
                        " (a truncated or corrupted file? re-create it with trident-tokenize)"));
  }
  const hid_t f = h_->file.get();
  TRIDENT_CHECK(H5Lexists(f, "tokens", H5P_DEFAULT) > 0, path,
                ": no dataset 'tokens' (an HDF5 token file holds its ids in /tokens; write one "
                "with trident-tokenize)");
  h_->dset =
      H5Handle(check_id(H5Dopen2(f, "tokens", H5P_DEFAULT), path, "cannot open /tokens"), H5Dclose);
  const hid_t d = h_->dset.get();
  H5Handle type(H5Dget_type(d), H5Tclose);
  TRIDENT_CHECK(H5Tget_class(type.get()) == H5T_INTEGER, path,
                ": /tokens must hold integers (uint16 or uint32 token ids)");
  meta_.token_bytes = static_cast<int>(H5Tget_size(type.get()));
  h_->is_signed = H5Tget_sign(type.get()) == H5T_SGN_2;
  TRIDENT_CHECK(meta_.token_bytes == 1 || meta_.token_bytes == 2 || meta_.token_bytes == 4 ||
                    meta_.token_bytes == 8,
                path, ": /tokens holds ", meta_.token_bytes,
                "-byte integers (1, 2, 4 or 8 expected)");
  const bool s = h_->is_signed;
  h_->memory_type = meta_.token_bytes == 1   ? (s ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8)
                    : meta_.token_bytes == 2 ? (s ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16)
                    : meta_.token_bytes == 4 ? (s ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32)
                                             : (s ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64);
  H5Handle space(H5Dget_space(d), H5Sclose);
  TRIDENT_CHECK(H5Sget_simple_extent_ndims(space.get()) == 1, path,
                ": /tokens must be one-dimensional, it has ",
                H5Sget_simple_extent_ndims(space.get()), " dimensions");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  meta_.num_tokens = static_cast<int64_t>(n);

  // Attributes: on /tokens, or on the root group for files written by other programs.
  auto int_attr = [&](const char* name, int64_t* v) {
    return read_int_attribute(d, name, path, v) || read_int_attribute(f, name, path, v);
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
  if (!read_string_attribute(d, "tokenizer", path, &meta_.tokenizer)) {
    read_string_attribute(f, "tokenizer", path, &meta_.tokenizer);
  }
}

Hdf5TokenReader::~Hdf5TokenReader() {
  if (!h_) return;
  Hdf5Quiet quiet;
  h_.reset();
}
Hdf5TokenReader::Hdf5TokenReader(Hdf5TokenReader&&) noexcept = default;
Hdf5TokenReader& Hdf5TokenReader::operator=(Hdf5TokenReader&&) noexcept = default;

void Hdf5TokenReader::read(int64_t begin, int64_t count, int32_t* out) const {
  TRIDENT_CHECK(
      begin >= 0 && count >= 0 && begin <= meta_.num_tokens && count <= meta_.num_tokens - begin,
      path_, ": tokens [", begin, ", ", begin + count, ") are outside the file's ",
      meta_.num_tokens, " tokens");
  if (count == 0) return;
  Hdf5Quiet quiet;
  const hid_t d = h_->dset.get();
  const hsize_t start = static_cast<hsize_t>(begin), n = static_cast<hsize_t>(count);
  H5Handle fspace(H5Dget_space(d), H5Sclose);
  check_ok(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr), path_,
           "cannot select tokens");
  H5Handle mspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  // Read in the file's own width (HDF5's type conversion costs more than the read of a cached
  // chunk), then widen here; every id must fit a non-negative int32.
  const size_t width = static_cast<size_t>(meta_.token_bytes);
  const bool in_place = width == 4;
  std::vector<unsigned char>& raw = h_->scratch;
  if (!in_place) raw.resize(width * static_cast<size_t>(count));
  if (H5Dread(d, h_->memory_type, mspace.get(), fspace.get(), H5P_DEFAULT,
              in_place ? static_cast<void*>(out) : static_cast<void*>(raw.data())) < 0) {
    throw Error(str_cat(
        path_, ": reading tokens [", begin, ", ", begin + count, ") failed: ", hdf5_reason(),
        " (the file is corrupted or truncated; re-create it with trident-tokenize)"));
  }
  const bool is_signed = h_->is_signed;
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
  switch (width) {
    case 1:
      is_signed ? widen(int8_t{}) : widen(uint8_t{});
      break;
    case 2:
      is_signed ? widen(int16_t{}) : widen(uint16_t{});
      break;
    case 4:
      is_signed ? widen(int32_t{}) : widen(uint32_t{});
      break;
    default:
      is_signed ? widen(int64_t{}) : widen(uint64_t{});
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Hdf5TokenWriter::Handles {
  H5Handle file, dset;
};

Hdf5TokenWriter::Hdf5TokenWriter(const std::string& path, int64_t vocab_size,
                                 const std::string& tokenizer, int64_t eot_token)
    : path_(path),
      tmp_(temporary_path_for(path)),
      vocab_size_(vocab_size),
      tokenizer_(tokenizer),
      eot_token_(eot_token),
      h_(std::make_unique<Handles>()) {
  TRIDENT_CHECK(vocab_size > 0 && vocab_size <= (int64_t(1) << 31), path, ": vocabulary size ",
                vocab_size, " must be in [1, 2^31]");
  TRIDENT_CHECK(eot_token < vocab_size, path, ": end-of-text token ", eot_token,
                " is outside the vocabulary of ", vocab_size);
  Hdf5Quiet quiet;
  h_->file = H5Handle(check_id(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                               path, str_cat("cannot create ", tmp_)),
                      H5Fclose);
  const hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = kHdf5TokenChunk;
  H5Handle space(H5Screate_simple(1, &zero, &unlimited), H5Sclose);
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  check_ok(H5Pset_chunk(dcpl.get(), 1, &chunk), path, "cannot set the chunk size");
  check_ok(H5Pset_fletcher32(dcpl.get()), path, "cannot enable Fletcher-32 checksums");
  const hid_t type = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
  h_->dset = H5Handle(check_id(H5Dcreate2(h_->file.get(), "tokens", type, space.get(), H5P_DEFAULT,
                                          dcpl.get(), H5P_DEFAULT),
                               path, "cannot create /tokens"),
                      H5Dclose);
}

Hdf5TokenWriter::~Hdf5TokenWriter() {
  if (!h_) return;  // finished
  Hdf5Quiet quiet;
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
  Hdf5Quiet quiet;
  const hid_t d = h_->dset.get();
  const hsize_t start = static_cast<hsize_t>(written_), n = pending_.size(), total = start + n;
  check_ok(H5Dset_extent(d, &total), path_, "cannot extend /tokens");
  H5Handle fspace(H5Dget_space(d), H5Sclose);
  check_ok(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr), path_,
           "cannot select tokens");
  H5Handle mspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  check_ok(H5Dwrite(d, H5T_NATIVE_UINT32, mspace.get(), fspace.get(), H5P_DEFAULT, pending_.data()),
           path_, str_cat("writing ", n, " tokens failed (disk full?)"));
  written_ += static_cast<int64_t>(n);
  pending_.clear();
}

void Hdf5TokenWriter::finish() {
  TRIDENT_CHECK(h_ != nullptr, path_, ": finish() called twice");
  flush();
  {
    Hdf5Quiet quiet;
    const hid_t d = h_->dset.get();
    write_int_attribute(d, "vocab_size", vocab_size_, path_);
    write_string_attribute(d, "tokenizer", tokenizer_, path_);
    write_int_attribute(d, "num_tokens", written_, path_);
    write_int_attribute(d, "format_version", kHdf5TokenFormatVersion, path_);
    if (eot_token_ >= 0) write_int_attribute(d, "eot_token", eot_token_, path_);
    const bool ok = h_->dset.close() && h_->file.close();
    if (!ok) fail(path_, str_cat("cannot close ", tmp_, " (disk full?)"));
  }
  h_.reset();
  commit_temporary_file(tmp_, path_);
}

}  // namespace trident
