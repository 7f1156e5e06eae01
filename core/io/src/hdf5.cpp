#include "trident/io/hdf5.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace trident::hdf5 {

namespace {

// An Elem's HDF5 types (on disk: little-endian; in memory: native), size and name.
struct ElemTypes {
  hid_t file_type;
  hid_t memory_type;
  size_t size;
  const char* name;
};

ElemTypes elem_types(Elem e) {
  switch (e) {
    case Elem::F32:
      return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, "f32"};
    case Elem::F64:
      return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 8, "f64"};
    case Elem::I8:
      return {H5T_STD_I8LE, H5T_NATIVE_INT8, 1, "i8"};
    case Elem::I16:
      return {H5T_STD_I16LE, H5T_NATIVE_INT16, 2, "i16"};
    case Elem::I32:
      return {H5T_STD_I32LE, H5T_NATIVE_INT32, 4, "i32"};
    case Elem::I64:
      return {H5T_STD_I64LE, H5T_NATIVE_INT64, 8, "i64"};
    case Elem::U8:
      return {H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, "u8"};
    case Elem::U16:
      return {H5T_STD_U16LE, H5T_NATIVE_UINT16, 2, "u16"};
    case Elem::U32:
      return {H5T_STD_U32LE, H5T_NATIVE_UINT32, 4, "u32"};
    case Elem::U64:
      return {H5T_STD_U64LE, H5T_NATIVE_UINT64, 8, "u64"};
  }
  return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, "f32"};
}

hid_t file_type(Elem e) {
  return elem_types(e).file_type;
}
hid_t memory_type(Elem e) {
  return elem_types(e).memory_type;
}

// The Elem of a dataset's stored type.
Elem elem_of_type(hid_t type, const std::string& where) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT) {
    if (size == 4) return Elem::F32;
    if (size == 8) return Elem::F64;
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (size == 1) return is_signed ? Elem::I8 : Elem::U8;
    if (size == 2) return is_signed ? Elem::I16 : Elem::U16;
    if (size == 4) return is_signed ? Elem::I32 : Elem::U32;
    if (size == 8) return is_signed ? Elem::I64 : Elem::U64;
  }
  throw trident::Error(str_cat(where, ": unsupported element type (HDF5 type class ",
                               static_cast<int>(cls), ", ", size,
                               " bytes; supported: 1-, 2-, 4- and 8-byte integers, f32, f64)"));
}

herr_t collect_error(unsigned, const H5E_error2_t* err, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (err->desc == nullptr || err->desc[0] == '\0') return 0;
  if (s->find(err->desc) != std::string::npos) return 0;
  if (!s->empty()) *s += ": ";
  *s += err->desc;
  std::replace(s->begin(), s->end(), '\n', ' ');  // some carry ctime()'s newline
  return 0;
}

// HDF5's error stack, outermost call first ("unable to open file: truncated file: eof = 1000,
// ..."), then cleared.
std::string error_stack() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "HDF5 reported no reason" : s;
}

// Throws for the HDF5 call that just failed.
[[noreturn]] void fail(const std::string& what) {
  throw Error(what, error_stack());
}

std::vector<hsize_t> dims_of(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

DatasetInfo info_of(hid_t ds, const std::string& where) {
  Handle type = checked(H5Dget_type(ds), H5Tclose, str_cat(where, ": no type"));
  Handle space = checked(H5Dget_space(ds), H5Sclose, str_cat(where, ": no shape"));
  const int rank = H5Sget_simple_extent_ndims(space.id());
  if (rank < 0) fail(str_cat(where, ": bad shape"));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  DatasetInfo info;
  info.elem = elem_of_type(type.id(), where);
  info.shape.assign(dims.begin(), dims.end());
  return info;
}

}  // namespace

Handle checked(hid_t id, herr_t (*close)(hid_t), const std::string& what) {
  if (id < 0) fail(what);
  return Handle(id, close);
}

void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

int64_t chunk_rows_for(const std::vector<int64_t>& shape, int64_t target) {
  if (shape.empty()) return 1;
  int64_t row = 1;
  for (size_t d = 1; d < shape.size(); ++d) row *= shape[d];
  const int64_t rows = row > 0 ? std::max<int64_t>(1, target / row) : shape[0];
  return std::max<int64_t>(1, std::min(shape[0], rows));
}

Elem elem_of(DType t) {
  switch (t) {
    case DType::F32:
      return Elem::F32;
    case DType::F64:
      return Elem::F64;
    case DType::I32:
      return Elem::I32;
    case DType::I64:
      return Elem::I64;
    case DType::U8:
      return Elem::U8;
    default:
      break;
  }
  throw trident::Error(str_cat("HDF5: no on-disk type for ", dtype_name(t)));
}

size_t elem_size(Elem e) {
  return elem_types(e).size;
}

const char* elem_name(Elem e) {
  return elem_types(e).name;
}

bool is_integer(Elem e) {
  return e != Elem::F32 && e != Elem::F64;
}

void silence_hdf5_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void Handle::reset() {
  if (id_ >= 0 && close_ != nullptr) close_(id_);
  id_ = H5I_INVALID_HID;
}

bool Handle::close() {
  const bool ok = id_ < 0 || close_ == nullptr || close_(id_) >= 0;
  id_ = H5I_INVALID_HID;
  return ok;
}

int64_t DatasetInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Object: attributes

std::string Object::child_path(const std::string& name) const {
  return path_ + (path_.back() == '/' ? "" : "/") + name;
}

std::string Object::where(const std::string& name) const {
  return file_ + ": " + (name.empty() ? path_ : child_path(name));
}

namespace {

void write_attr(hid_t obj, const std::string& key, hid_t file_t, hid_t mem_t, const void* value,
                const std::string& where) {
  if (H5Aexists(obj, key.c_str()) > 0) {
    check(H5Adelete(obj, key.c_str()), str_cat(where, ": cannot replace attribute ", key));
  }
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate failed");
  Handle attr = checked(H5Acreate2(obj, key.c_str(), file_t, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, str_cat(where, ": cannot create attribute ", key));
  check(H5Awrite(attr.id(), mem_t, value), str_cat(where, ": cannot write attribute ", key));
}

// The attribute `key` of `obj` and its type, which must be of class `cls` (or `also`) and hold
// one value: reading an array into one value would overrun it.
struct ScalarAttr {
  Handle attr, type;
};
ScalarAttr open_scalar_attr(hid_t obj, const std::string& key, const std::string& where,
                            const char* kind, H5T_class_t cls, H5T_class_t also) {
  TRIDENT_CHECK(H5Aexists(obj, key.c_str()) > 0, where, ": missing attribute '", key, "'");
  ScalarAttr a;
  a.attr = checked(H5Aopen(obj, key.c_str(), H5P_DEFAULT), H5Aclose,
                   str_cat(where, ": cannot open attribute ", key));
  a.type = checked(H5Aget_type(a.attr.id()), H5Tclose,
                   str_cat(where, ": attribute ", key, " has no type"));
  Handle space = checked(H5Aget_space(a.attr.id()), H5Sclose,
                         str_cat(where, ": attribute ", key, " has no shape"));
  const H5T_class_t c = H5Tget_class(a.type.id());
  const hssize_t n = H5Sget_simple_extent_npoints(space.id());
  TRIDENT_CHECK((c == cls || c == also) && n == 1, where, ": attribute ", key, " must be one ",
                kind, " (it holds ", n, " values of HDF5 type class ", static_cast<int>(c), ")");
  return a;
}

}  // namespace

void Object::set_attr(const std::string& key, int64_t value) const {
  write_attr(id(), key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, where());
}

void Object::set_attr(const std::string& key, double value) const {
  write_attr(id(), key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, where());
}

void Object::set_attr(const std::string& key, const std::string& value) const {
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy failed");
  check(H5Tset_size(type.id(), std::max<size_t>(value.size(), 1)), "H5Tset_size failed");
  check(H5Tset_cset(type.id(), H5T_CSET_UTF8), "H5Tset_cset failed");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(id(), key, type.id(), type.id(), padded.data(), where());
}

void Object::set_attr_varlen(const std::string& key, const std::string& value) const {
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy failed");
  check(H5Tset_size(type.id(), H5T_VARIABLE), "H5Tset_size failed");
  check(H5Tset_cset(type.id(), H5T_CSET_UTF8), "H5Tset_cset failed");
  const char* p = value.c_str();
  write_attr(id(), key, type.id(), type.id(), &p, where());
}

bool Object::has_attr(const std::string& key) const {
  return H5Aexists(id(), key.c_str()) > 0;
}

int64_t Object::attr_int(const std::string& key) const {
  const ScalarAttr a = open_scalar_attr(id(), key, where(), "integer", H5T_INTEGER, H5T_INTEGER);
  int64_t v = 0;  // HDF5 converts any integer width and sign
  check(H5Aread(a.attr.id(), H5T_NATIVE_INT64, &v),
        str_cat(where(), ": cannot read attribute ", key, " as an int64"));
  return v;
}

double Object::attr_double(const std::string& key) const {
  const ScalarAttr a = open_scalar_attr(id(), key, where(), "number", H5T_FLOAT, H5T_INTEGER);
  double v = 0;
  check(H5Aread(a.attr.id(), H5T_NATIVE_DOUBLE, &v),
        str_cat(where(), ": cannot read attribute ", key));
  return v;
}

std::string Object::attr_string(const std::string& key) const {
  const ScalarAttr a = open_scalar_attr(id(), key, where(), "string", H5T_STRING, H5T_STRING);
  const hid_t type = a.type.id();      // read as stored: no conversion of padding or character set
  if (H5Tis_variable_str(type) > 0) {  // what h5py writes for str
    char* s = nullptr;
    check(H5Aread(a.attr.id(), type, &s), str_cat(where(), ": cannot read attribute ", key));
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type), '\0');
  check(H5Aread(a.attr.id(), type, out.data()), str_cat(where(), ": cannot read attribute ", key));
  if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) {  // Fortran's padding
    while (!out.empty() && out.back() == ' ') out.pop_back();
  } else {
    out.resize(std::strlen(out.c_str()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dataset

void Dataset::read_range(int64_t begin, int64_t count, void* out) const {
  TRIDENT_CHECK(info_.shape.size() == 1, where(), ": range reads need a 1-D dataset, it has ",
                info_.shape.size(), " dimensions");
  const int64_t n = info_.shape[0];
  TRIDENT_CHECK(begin >= 0 && count >= 0 && begin <= n && count <= n - begin, where(),
                ": elements [", begin, ", ", begin + count, ") are outside its ", n);
  if (count == 0) return;
  // Called thousands of times for small windows: no message is built unless a call fails.
  auto failed = [&] {
    fail(str_cat(where(), ": cannot read elements [", begin, ", ", begin + count,
                 ") (file truncated or corrupted?)"));
  };
  const hsize_t start = static_cast<hsize_t>(begin), len = static_cast<hsize_t>(count);
  Handle fspace(H5Dget_space(id()), H5Sclose);
  if (!fspace.valid()) failed();
  if (H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, &start, nullptr, &len, nullptr) < 0) {
    failed();
  }
  Handle mspace(H5Screate_simple(1, &len, nullptr), H5Sclose);
  if (!mspace.valid()) failed();
  // The stored width and sign in native order: no conversion (on little-endian hosts), which
  // costs more than the read of a cached chunk.
  if (H5Dread(id(), memory_type(info_.elem), mspace.id(), fspace.id(), H5P_DEFAULT, out) < 0) {
    failed();
  }
}

void Dataset::append(Elem elem, const void* data, int64_t count) {
  TRIDENT_CHECK(info_.shape.size() == 1 && count >= 0, where(), ": cannot append ", count,
                " elements to a dataset of ", info_.shape.size(), " dimensions");
  if (count == 0) return;
  const hsize_t start = static_cast<hsize_t>(info_.shape[0]), n = static_cast<hsize_t>(count);
  const hsize_t total = start + n;
  check(H5Dset_extent(id(), &total),
        str_cat(where(), ": cannot grow to ", total, " elements (not made by create_appendable?)"));
  info_.shape[0] = static_cast<int64_t>(total);
  Handle fspace = checked(H5Dget_space(id()), H5Sclose, str_cat(where(), ": no shape"));
  check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, &start, nullptr, &n, nullptr),
        str_cat(where(), ": cannot select elements [", start, ", ", total, ")"));
  Handle mspace = checked(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple failed");
  check(H5Dwrite(id(), memory_type(elem), mspace.id(), fspace.id(), H5P_DEFAULT, data),
        str_cat(where(), ": writing ", count, " elements failed (disk full?)"));
}

void Dataset::close() {
  if (!h_.close()) fail(str_cat(where(), ": cannot close (disk full?)"));
}

// ---------------------------------------------------------------------------------------------
// Node: groups and datasets

Node Node::create_group(const std::string& name) const {
  Handle g = checked(H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Gclose, str_cat(where(name), ": cannot create group"));
  return Node(std::move(g), file_, child_path(name));
}

Node Node::open_group(const std::string& name) const {
  TRIDENT_CHECK(has(name), where(name), ": missing group");
  Handle g = checked(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), H5Gclose,
                     str_cat(where(name), ": cannot open group"));
  return Node(std::move(g), file_, child_path(name));
}

bool Node::has(const std::string& name) const {
  return H5Lexists(id(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> Node::children() const {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  check(H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &names),
        str_cat(where(), ": cannot list members"));
  return names;
}

void Node::write_dataset(const std::string& name, Elem elem, const std::vector<int64_t>& shape,
                         const void* data, int64_t chunk_rows, bool fletcher32) const {
  const auto dims = dims_of(shape);
  Handle space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                         H5Sclose, str_cat(where(name), ": bad shape"));
  Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
  const bool empty = DatasetInfo{elem, shape}.numel() == 0;
  if (chunk_rows > 0 && !shape.empty() && !empty) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], static_cast<hsize_t>(chunk_rows));
    check(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()),
          str_cat(where(name), ": bad chunk size"));
    if (fletcher32) {
      check(H5Pset_fletcher32(dcpl.id()),
            str_cat(where(name), ": cannot enable Fletcher-32 checksums"));
    }
  }
  Handle ds = checked(H5Dcreate2(id(), name.c_str(), file_type(elem), space.id(), H5P_DEFAULT,
                                 dcpl.id(), H5P_DEFAULT),
                      H5Dclose, str_cat(where(name), ": cannot create dataset"));
  if (!empty) {
    check(H5Dwrite(ds.id(), memory_type(elem), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          str_cat(where(name), ": cannot write dataset"));
  }
}

Dataset Node::create_appendable(const std::string& name, Elem elem, int64_t chunk) const {
  TRIDENT_CHECK(chunk > 0, where(name), ": chunk size ", chunk, " must be positive");
  const hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk_dim = static_cast<hsize_t>(chunk);
  Handle space =
      checked(H5Screate_simple(1, &zero, &unlimited), H5Sclose, "H5Screate_simple failed");
  Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
  check(H5Pset_chunk(dcpl.id(), 1, &chunk_dim), str_cat(where(name), ": bad chunk size"));
  check(H5Pset_fletcher32(dcpl.id()),
        str_cat(where(name), ": cannot enable Fletcher-32 checksums"));
  Handle ds = checked(H5Dcreate2(id(), name.c_str(), file_type(elem), space.id(), H5P_DEFAULT,
                                 dcpl.id(), H5P_DEFAULT),
                      H5Dclose, str_cat(where(name), ": cannot create dataset"));
  return Dataset(std::move(ds), file_, child_path(name), DatasetInfo{elem, {0}});
}

Dataset Node::open_dataset(const std::string& name) const {
  TRIDENT_CHECK(has(name), where(name), ": missing dataset");
  Handle ds = checked(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose,
                      str_cat(where(name), ": cannot open dataset"));
  DatasetInfo info = info_of(ds.id(), where(name));
  return Dataset(std::move(ds), file_, child_path(name), std::move(info));
}

DatasetInfo Node::dataset_info(const std::string& name) const {
  return open_dataset(name).info();
}

void Node::read_dataset(const std::string& name, Elem elem, void* out) const {
  const Dataset ds = open_dataset(name);
  if (ds.info().numel() == 0) return;
  check(H5Dread(ds.id(), memory_type(elem), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
        str_cat(where(name), ": cannot read dataset (file truncated or corrupted?)"));
}

void Node::read_rows(const std::string& name, Elem elem, int64_t begin, int64_t count,
                     void* out) const {
  const Dataset ds = open_dataset(name);
  const DatasetInfo& info = ds.info();
  TRIDENT_CHECK(!info.shape.empty(), where(name), ": is a scalar, not rows");
  TRIDENT_CHECK(begin >= 0 && count >= 0 && begin + count <= info.shape[0], where(name), ": rows [",
                begin, ", ", begin + count, ") outside its ", info.shape[0], " rows");
  if (count == 0) return;
  Handle fspace = checked(H5Dget_space(ds.id()), H5Sclose, str_cat(where(name), ": no shape"));
  std::vector<hsize_t> start(info.shape.size(), 0), cnt = dims_of(info.shape);
  start[0] = static_cast<hsize_t>(begin);
  cnt[0] = static_cast<hsize_t>(count);
  check(
      H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, start.data(), nullptr, cnt.data(), nullptr),
      str_cat(where(name), ": bad row range"));
  Handle mspace = checked(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr),
                          H5Sclose, str_cat(where(name), ": bad row range"));
  check(H5Dread(ds.id(), memory_type(elem), mspace.id(), fspace.id(), H5P_DEFAULT, out),
        str_cat(where(name), ": cannot read rows [", begin, ", ", begin + count,
                ") (file truncated or corrupted?)"));
}

Object Node::open_object(const std::string& name) const {
  const std::string at = name.empty() ? "." : name;
  TRIDENT_CHECK(name.empty() || has(name), where(name), ": missing");
  Handle h = checked(H5Oopen(id(), at.c_str(), H5P_DEFAULT), H5Oclose,
                     str_cat(where(name), ": cannot open"));
  return Object(std::move(h), file_, name.empty() ? path_ : child_path(name));
}

void Node::set_attr(const std::string& key, int64_t value, const std::string& object) const {
  open_object(object).set_attr(key, value);
}

void Node::set_attr(const std::string& key, double value, const std::string& object) const {
  open_object(object).set_attr(key, value);
}

void Node::set_attr(const std::string& key, const std::string& value,
                    const std::string& object) const {
  open_object(object).set_attr(key, value);
}

bool Node::has_attr(const std::string& key, const std::string& object) const {
  if (!object.empty() && !has(object)) return false;
  return open_object(object).has_attr(key);
}

int64_t Node::attr_int(const std::string& key, const std::string& object) const {
  return open_object(object).attr_int(key);
}

double Node::attr_double(const std::string& key, const std::string& object) const {
  return open_object(object).attr_double(key);
}

std::string Node::attr_string(const std::string& key, const std::string& object) const {
  return open_object(object).attr_string(key);
}

// ---------------------------------------------------------------------------------------------
// File

File File::create(const std::string& path, hid_t fapl) {
  silence_hdf5_errors();
  Handle h =
      checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose,
              str_cat(path, ": cannot create HDF5 file (directory missing or not writable?)"));
  return File(std::move(h), path);
}

File File::open_for_update(const std::string& path) {
  silence_hdf5_errors();
  TRIDENT_CHECK(std::filesystem::exists(path), path, ": no such file");
  Handle h = checked(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose,
                     str_cat(path, ": cannot open for writing"));
  return File(std::move(h), path);
}

File File::open(const std::string& path, Locking locking) {
  silence_hdf5_errors();
  TRIDENT_CHECK(std::filesystem::exists(path), path, ": no such file");
  Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
  if (locking == Locking::Off) {
    check(H5Pset_file_locking(fapl.id(), false, /*ignore_when_disabled=*/true),
          str_cat(path, ": cannot turn file locking off"));
  }
  Handle h = checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), H5Fclose,
                     str_cat(path, ": not a readable HDF5 file (truncated or corrupted?)"));
  return File(std::move(h), path);
}

void File::flush() const {
  check(H5Fflush(id(), H5F_SCOPE_GLOBAL), str_cat(file_, ": cannot flush"));
}

void File::close() {
  if (!h_.close()) fail(str_cat(file_, ": cannot close (disk full?)"));
}

}  // namespace trident::hdf5
