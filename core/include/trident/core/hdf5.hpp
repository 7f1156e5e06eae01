// A small RAII layer over HDF5's C API, for checkpoints and token data sets.
//
// Every handle closes itself; every failure throws trident::Error naming the file and the
// object ("run/step_100.h5: cannot read dataset /params/wte.weight/value") instead of
// HDF5's own error stack, which is silenced. Paths are HDF5 paths ("/params/h.0.ln_1.weight");
// parameter names may contain dots, which HDF5 treats as ordinary characters.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/dtype.hpp"

namespace trident::hdf5 {

// Element types stored on disk (little-endian). The DType ones map one to one; U16/U32 are for
// token ids.
enum class Elem : uint8_t { F32, F64, I32, I64, U8, U16, U32 };
Elem elem_of(DType t);  // throws for bf16 and f16, which checkpoints store as f32
size_t elem_size(Elem e);
const char* elem_name(Elem e);

// An owned hid_t with its close function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

struct DatasetInfo {
  Elem elem = Elem::F32;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// A group or the file's root: where datasets, child groups and attributes live.
class Node {
 public:
  Node(Handle h, std::string file, std::string path)
      : h_(std::move(h)), file_(std::move(file)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  hid_t id() const { return h_.id(); }

  Node create_group(const std::string& name) const;
  Node open_group(const std::string& name) const;
  bool has(const std::string& name) const;  // a link of that name (group or dataset)
  // Names of the links directly below, in creation order for groups written by this wrapper.
  std::vector<std::string> children() const;

  // A dataset of `shape` filled from `data` (numel x elem_size bytes). `chunk` > 0 stores it
  // chunked in pieces of that many elements along dim 0 (needed to grow or read parts fast).
  void write_dataset(const std::string& name, Elem elem, const std::vector<int64_t>& shape,
                     const void* data, int64_t chunk_rows = 0) const;
  DatasetInfo dataset_info(const std::string& name) const;
  // Reads the whole dataset, converting to `elem` (HDF5 converts between numeric types).
  void read_dataset(const std::string& name, Elem elem, void* out) const;
  // Reads rows [begin, begin + count) of a dataset along dim 0 (any rank; rows are whole).
  void read_rows(const std::string& name, Elem elem, int64_t begin, int64_t count,
                 void* out) const;

  // Attributes on this node, or on the dataset/group `object` below it when given.
  void set_attr(const std::string& key, int64_t value, const std::string& object = "") const;
  void set_attr(const std::string& key, double value, const std::string& object = "") const;
  void set_attr(const std::string& key, const std::string& value,
                const std::string& object = "") const;
  void set_attr(const std::string& key, const char* value, const std::string& object = "") const {
    set_attr(key, std::string(value), object);
  }
  bool has_attr(const std::string& key, const std::string& object = "") const;
  int64_t attr_int(const std::string& key, const std::string& object = "") const;
  double attr_double(const std::string& key, const std::string& object = "") const;
  std::string attr_string(const std::string& key, const std::string& object = "") const;

 protected:
  std::string where(const std::string& name) const;  // "file: /path/name"
  Handle open_object(const std::string& object) const;

  Handle h_;
  std::string file_;
  std::string path_;
};

class File : public Node {
 public:
  // Creates (or truncates) `path` for writing.
  static File create(const std::string& path);
  // Opens an existing file read-only; a missing, truncated or non-HDF5 file throws.
  static File open(const std::string& path);
  const std::string& filename() const { return file_; }
  // Writes everything buffered to the file (H5Fflush); closing happens on destruction.
  void flush() const;
  // Closes the file now (to fsync and rename it, say).
  void close() { h_.reset(); }

 private:
  File(Handle h, std::string file) : Node(std::move(h), std::move(file), "/") {}
};

// Silences HDF5's automatic error printing for this process (done by File::create/open).
void silence_hdf5_errors();

}  // namespace trident::hdf5
