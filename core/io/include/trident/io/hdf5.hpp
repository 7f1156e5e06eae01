// A small RAII layer over HDF5's C API, for checkpoints and token data sets.
//
// Every handle closes itself; every failure throws trident::Error naming the file and the
// object ("run/step_100.h5: /params/wte.weight/value: cannot read dataset: <HDF5's reason>")
// instead of HDF5's own error stack, which is silenced. Paths are HDF5 paths
// ("/params/h.0.ln_1.weight"); parameter names may contain dots, which HDF5 treats as ordinary
// characters.
//
// Objects: a File is the root Node; a Node (group) holds datasets, child groups and attributes;
// a Dataset is an open dataset, kept open for many range reads or appends. All three carry
// attributes (Object).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/dtype.hpp"
#include "trident/core/error.hpp"

namespace trident::hdf5 {

// Element types stored on disk (little-endian). The DType ones map one to one; the other
// integers are for token ids (ours are U16/U32; other programs write any width and sign).
enum class Elem : uint8_t { F32, F64, I8, I16, I32, I64, U8, U16, U32, U64 };
Elem elem_of(DType t);  // throws for bf16 and f16, which checkpoints store as f32
size_t elem_size(Elem e);
const char* elem_name(Elem e);
bool is_integer(Elem e);

// A call into HDF5 failed. The message names the file and the object, then HDF5's own reason
// (its error stack, outermost call first: "unable to open file: truncated file: eof = 1000, ...");
// reason() is that part alone, for callers that word the failure for their users.
class Error : public trident::Error {
 public:
  Error(const std::string& what, std::string reason)
      : trident::Error(what + ": " + reason), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// An owned hid_t with its close function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), close_(closer) {}
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
  // Closes, ignoring a failure (for destructors and unwinding).
  void reset();
  // Closes and reports whether HDF5 accepted it (closing a file flushes it, so it can fail).
  [[nodiscard]] bool close();

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

struct DatasetInfo {
  Elem elem = Elem::F32;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// A file's root, a group or a dataset: something attributes hang on. Attributes are scalars:
// integers (any width and sign on read, int64 on write), doubles and UTF-8 strings (fixed- or
// variable-length, null- or space-padded on read, as other programs write them).
class Object {
 public:
  Object(Handle h, std::string file, std::string path)
      : h_(std::move(h)), file_(std::move(file)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  const std::string& filename() const { return file_; }
  hid_t id() const { return h_.id(); }

  // Writes (or replaces) an attribute.
  void set_attr(const std::string& key, int64_t value) const;
  void set_attr(const std::string& key, double value) const;
  void set_attr(const std::string& key, const std::string& value) const;
  void set_attr(const std::string& key, const char* value) const {
    set_attr(key, std::string(value));
  }
  // A variable-length UTF-8 string, which h5py reads as str (fixed-length ones read as bytes).
  void set_attr_varlen(const std::string& key, const std::string& value) const;
  bool has_attr(const std::string& key) const;
  // Read an attribute; a missing one, or one of another kind, throws naming it.
  int64_t attr_int(const std::string& key) const;
  double attr_double(const std::string& key) const;
  std::string attr_string(const std::string& key) const;

 protected:
  std::string where(const std::string& name = "") const;  // "file: /path/name"
  std::string child_path(const std::string& name) const;  // "/path/name"

  Handle h_;
  std::string file_;
  std::string path_;
};

// An open dataset. Range reads and appends are for 1-D datasets (token ids): the dataset stays
// open between calls, since reopening it costs more than reading a cached chunk.
class Dataset : public Object {
 public:
  Dataset(Handle h, std::string file, std::string path, DatasetInfo info)
      : Object(std::move(h), std::move(file), std::move(path)), info_(std::move(info)) {}
  // Element type and shape (the shape follows this handle's appends).
  const DatasetInfo& info() const { return info_; }

  // Elements [begin, begin + count) into out[0, count) in the stored type, without HDF5's type
  // conversion: out holds count * elem_size(info().elem) bytes.
  void read_range(int64_t begin, int64_t count, void* out) const;
  // Grows the dataset by `count` elements of `elem` (HDF5 converts them to the stored type).
  // Only for datasets made by Node::create_appendable.
  void append(Elem elem, const void* data, int64_t count);
  // Closes now and throws when HDF5 reports a failure.
  void close();

 private:
  DatasetInfo info_;
};

// A group or the file's root: where datasets, child groups and attributes live.
class Node : public Object {
 public:
  using Object::Object;

  Node create_group(const std::string& name) const;
  Node open_group(const std::string& name) const;
  bool has(const std::string& name) const;  // a link of that name (group or dataset)
  // Names of the links directly below, in creation order for groups written by this wrapper.
  std::vector<std::string> children() const;

  // A dataset of `shape` filled from `data` (numel x elem_size bytes). `chunk` > 0 stores it
  // chunked in pieces of that many elements along dim 0 (needed to grow or read parts fast);
  // `fletcher32` adds HDF5's Fletcher-32 checksum to every chunk (verified on every read).
  void write_dataset(const std::string& name, Elem elem, const std::vector<int64_t>& shape,
                     const void* data, int64_t chunk_rows = 0, bool fletcher32 = false) const;
  // An empty 1-D dataset that grows by Dataset::append: chunks of `chunk` elements, each with a
  // Fletcher-32 checksum, so a corrupted chunk fails its read instead of returning garbage.
  Dataset create_appendable(const std::string& name, Elem elem, int64_t chunk) const;
  Dataset open_dataset(const std::string& name) const;
  DatasetInfo dataset_info(const std::string& name) const;
  // Reads the whole dataset, converting to `elem` (HDF5 converts between numeric types).
  void read_dataset(const std::string& name, Elem elem, void* out) const;
  // Reads rows [begin, begin + count) of a dataset along dim 0 (any rank; rows are whole).
  void read_rows(const std::string& name, Elem elem, int64_t begin, int64_t count, void* out) const;

  // Attributes on this node, or on the dataset/group `object` below it.
  using Object::attr_double;
  using Object::attr_int;
  using Object::attr_string;
  using Object::has_attr;
  using Object::set_attr;
  void set_attr(const std::string& key, int64_t value, const std::string& object) const;
  void set_attr(const std::string& key, double value, const std::string& object) const;
  void set_attr(const std::string& key, const std::string& value, const std::string& object) const;
  void set_attr(const std::string& key, const char* value, const std::string& object) const {
    set_attr(key, std::string(value), object);
  }
  bool has_attr(const std::string& key, const std::string& object) const;  // false if no object
  int64_t attr_int(const std::string& key, const std::string& object) const;
  double attr_double(const std::string& key, const std::string& object) const;
  std::string attr_string(const std::string& key, const std::string& object) const;

 protected:
  Object open_object(const std::string& name) const;
};

// Whether a reader takes HDF5's file lock. Off for files many ranks open read-only on file
// systems without locks (Lustre, some NFS mounts), where taking one fails.
enum class Locking : uint8_t { On, Off };

class File : public Node {
 public:
  // Creates (or truncates) `path` for writing, with the file access properties `fapl` (the
  // MPI-IO driver of a parallel writer, say; collective then).
  static File create(const std::string& path, hid_t fapl = H5P_DEFAULT);
  // Opens an existing file read-only; a missing, truncated or non-HDF5 file throws.
  static File open(const std::string& path, Locking locking = Locking::On);
  // Opens an existing file for reading and writing (to add attributes, say).
  static File open_for_update(const std::string& path);
  // Writes everything buffered to the file (H5Fflush); closing happens on destruction.
  void flush() const;
  // Closes the file now (to fsync and rename it, say) and throws when the final flush fails.
  // Close its open Datasets first: the file stays open while they are.
  void close();

 private:
  File(Handle h, std::string file) : Node(std::move(h), std::move(file), "/") {}
};

// Silences HDF5's automatic error printing for this process (done by File::create/open).
void silence_hdf5_errors();

// For code that calls HDF5's C API directly (the parallel checkpoint writer): a handle from a
// call that returned `id`, and a check of a call's status; a failed call (negative) throws
// hdf5::Error with `what` and HDF5's reason.
Handle checked(hid_t id, herr_t (*close)(hid_t), const std::string& what);
void check(herr_t status, const std::string& what);

// Rows per chunk for a dataset of `shape` stored in chunks of about `target` elements along
// dim 0 (at least one row; all rows when the dataset is smaller).
int64_t chunk_rows_for(const std::vector<int64_t>& shape, int64_t target = int64_t{1} << 20);

}  // namespace trident::hdf5
