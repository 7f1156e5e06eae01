#include "trident/core/hdf5.hpp"

#include <filesystem>
#include <mutex>

#include "trident/core/error.hpp"

namespace trident::hdf5 {

namespace {

hid_t file_type(Elem e) {
  switch (e) {
    case Elem::F32: return H5T_IEEE_F32LE;
    case Elem::F64: return H5T_IEEE_F64LE;
    case Elem::I32: return H5T_STD_I32LE;
    case Elem::I64: return H5T_STD_I64LE;
    case Elem::U8: return H5T_STD_U8LE;
    case Elem::U16: return H5T_STD_U16LE;
    case Elem::U32: return H5T_STD_U32LE;
  }
  return H5T_IEEE_F32LE;
}

hid_t memory_type(Elem e) {
  switch (e) {
    case Elem::F32: return H5T_NATIVE_FLOAT;
    case Elem::F64: return H5T_NATIVE_DOUBLE;
    case Elem::I32: return H5T_NATIVE_INT32;
    case Elem::I64: return H5T_NATIVE_INT64;
    case Elem::U8: return H5T_NATIVE_UINT8;
    case Elem::U16: return H5T_NATIVE_UINT16;
    case Elem::U32: return H5T_NATIVE_UINT32;
  }
  return H5T_NATIVE_FLOAT;
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
    if (is_signed && size == 4) return Elem::I32;
    if (is_signed && size == 8) return Elem::I64;
    if (!is_signed && size == 1) return Elem::U8;
    if (!is_signed && size == 2) return Elem::U16;
    if (!is_signed && size == 4) return Elem::U32;
  }
  throw Error(str_cat(where, ": unsupported element type (class ", static_cast<int>(cls),
                      ", ", size, " bytes)"));
}

Handle checked(hid_t id, herr_t (*close)(hid_t), const std::string& what) {
  TRIDENT_CHECK(id >= 0, what);
  return Handle(id, close);
}

void check(herr_t status, const std::string& what) { TRIDENT_CHECK(status >= 0, what); }

std::vector<hsize_t> dims_of(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

}  // namespace

Elem elem_of(DType t) {
  switch (t) {
    case DType::F32: return Elem::F32;
    case DType::F64: return Elem::F64;
    case DType::I32: return Elem::I32;
    case DType::I64: return Elem::I64;
    case DType::U8: return Elem::U8;
    default: break;
  }
  throw Error(str_cat("HDF5: no on-disk type for ", dtype_name(t)));
}

size_t elem_size(Elem e) {
  switch (e) {
    case Elem::F32: case Elem::I32: case Elem::U32: return 4;
    case Elem::F64: case Elem::I64: return 8;
    case Elem::U16: return 2;
    case Elem::U8: return 1;
  }
  return 0;
}

const char* elem_name(Elem e) {
  switch (e) {
    case Elem::F32: return "f32";
    case Elem::F64: return "f64";
    case Elem::I32: return "i32";
    case Elem::I64: return "i64";
    case Elem::U8: return "u8";
    case Elem::U16: return "u16";
    case Elem::U32: return "u32";
  }
  return "?";
}

void silence_hdf5_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void Handle::reset() {
  if (id_ >= 0 && close_ != nullptr) close_(id_);
  id_ = H5I_INVALID_HID;
}

int64_t DatasetInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string Node::where(const std::string& name) const {
  std::string p = path_;
  if (!name.empty()) p += (p.back() == '/' ? "" : "/") + name;
  return file_ + ": " + p;
}

Node Node::create_group(const std::string& name) const {
  Handle g = checked(H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Gclose, str_cat(where(name), ": cannot create group"));
  return Node(std::move(g), file_, where(name).substr(file_.size() + 2));
}

Node Node::open_group(const std::string& name) const {
  TRIDENT_CHECK(has(name), where(name), ": missing group");
  Handle g = checked(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), H5Gclose,
                     str_cat(where(name), ": cannot open group"));
  return Node(std::move(g), file_, where(name).substr(file_.size() + 2));
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
        str_cat(where(""), ": cannot list members"));
  return names;
}

void Node::write_dataset(const std::string& name, Elem elem, const std::vector<int64_t>& shape,
                         const void* data, int64_t chunk_rows) const {
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
  }
  Handle ds = checked(H5Dcreate2(id(), name.c_str(), file_type(elem), space.id(), H5P_DEFAULT,
                                 dcpl.id(), H5P_DEFAULT),
                      H5Dclose, str_cat(where(name), ": cannot create dataset"));
  if (!empty) {
    check(H5Dwrite(ds.id(), memory_type(elem), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          str_cat(where(name), ": cannot write dataset"));
  }
}

DatasetInfo Node::dataset_info(const std::string& name) const {
  TRIDENT_CHECK(has(name), where(name), ": missing dataset");
  Handle ds = checked(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose,
                      str_cat(where(name), ": cannot open dataset"));
  Handle type = checked(H5Dget_type(ds.id()), H5Tclose, str_cat(where(name), ": no type"));
  Handle space = checked(H5Dget_space(ds.id()), H5Sclose, str_cat(where(name), ": no shape"));
  const int rank = H5Sget_simple_extent_ndims(space.id());
  TRIDENT_CHECK(rank >= 0, where(name), ": bad shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  DatasetInfo info;
  info.elem = elem_of_type(type.id(), where(name));
  info.shape.assign(dims.begin(), dims.end());
  return info;
}

void Node::read_dataset(const std::string& name, Elem elem, void* out) const {
  TRIDENT_CHECK(has(name), where(name), ": missing dataset");
  Handle ds = checked(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose,
                      str_cat(where(name), ": cannot open dataset"));
  if (dataset_info(name).numel() == 0) return;
  check(H5Dread(ds.id(), memory_type(elem), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
        str_cat(where(name), ": cannot read dataset (file truncated or corrupted?)"));
}

void Node::read_rows(const std::string& name, Elem elem, int64_t begin, int64_t count,
                     void* out) const {
  const DatasetInfo info = dataset_info(name);
  TRIDENT_CHECK(!info.shape.empty(), where(name), ": is a scalar, not rows");
  TRIDENT_CHECK(begin >= 0 && count >= 0 && begin + count <= info.shape[0], where(name),
                ": rows [", begin, ", ", begin + count, ") outside its ", info.shape[0], " rows");
  if (count == 0) return;
  Handle ds = checked(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose,
                      str_cat(where(name), ": cannot open dataset"));
  Handle fspace = checked(H5Dget_space(ds.id()), H5Sclose, str_cat(where(name), ": no shape"));
  std::vector<hsize_t> start(info.shape.size(), 0), cnt = dims_of(info.shape);
  start[0] = static_cast<hsize_t>(begin);
  cnt[0] = static_cast<hsize_t>(count);
  check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, start.data(), nullptr, cnt.data(),
                            nullptr),
        str_cat(where(name), ": bad row range"));
  Handle mspace = checked(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr),
                          H5Sclose, str_cat(where(name), ": bad row range"));
  check(H5Dread(ds.id(), memory_type(elem), mspace.id(), fspace.id(), H5P_DEFAULT, out),
        str_cat(where(name), ": cannot read rows [", begin, ", ", begin + count,
                ") (file truncated or corrupted?)"));
}

Handle Node::open_object(const std::string& object) const {
  if (object.empty()) return Handle(H5Oopen(id(), ".", H5P_DEFAULT), H5Oclose);
  TRIDENT_CHECK(has(object), where(object), ": missing");
  return checked(H5Oopen(id(), object.c_str(), H5P_DEFAULT), H5Oclose,
                 str_cat(where(object), ": cannot open"));
}

namespace {

void write_attr(hid_t obj, const std::string& key, hid_t file_t, hid_t mem_t, const void* value,
                const std::string& where) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate failed");
  Handle attr = checked(H5Acreate2(obj, key.c_str(), file_t, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                        H5Aclose, str_cat(where, ": cannot create attribute ", key));
  check(H5Awrite(attr.id(), mem_t, value), str_cat(where, ": cannot write attribute ", key));
}

Handle open_attr(hid_t obj, const std::string& key, const std::string& where) {
  TRIDENT_CHECK(H5Aexists(obj, key.c_str()) > 0, where, ": missing attribute '", key, "'");
  return checked(H5Aopen(obj, key.c_str(), H5P_DEFAULT), H5Aclose,
                 str_cat(where, ": cannot open attribute ", key));
}

}  // namespace

void Node::set_attr(const std::string& key, int64_t value, const std::string& object) const {
  Handle o = open_object(object);
  write_attr(o.id(), key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, where(object));
}

void Node::set_attr(const std::string& key, double value, const std::string& object) const {
  Handle o = open_object(object);
  write_attr(o.id(), key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, where(object));
}

void Node::set_attr(const std::string& key, const std::string& value,
                    const std::string& object) const {
  Handle o = open_object(object);
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy failed");
  check(H5Tset_size(type.id(), std::max<size_t>(value.size(), 1)), "H5Tset_size failed");
  check(H5Tset_cset(type.id(), H5T_CSET_UTF8), "H5Tset_cset failed");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(o.id(), key, type.id(), type.id(), padded.data(), where(object));
}

bool Node::has_attr(const std::string& key, const std::string& object) const {
  if (!object.empty() && !has(object)) return false;
  Handle o = open_object(object);
  return H5Aexists(o.id(), key.c_str()) > 0;
}

int64_t Node::attr_int(const std::string& key, const std::string& object) const {
  Handle o = open_object(object);
  Handle a = open_attr(o.id(), key, where(object));
  int64_t v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_INT64, &v), str_cat(where(object), ": attribute ", key,
                                                      " is not an integer"));
  return v;
}

double Node::attr_double(const std::string& key, const std::string& object) const {
  Handle o = open_object(object);
  Handle a = open_attr(o.id(), key, where(object));
  double v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v), str_cat(where(object), ": attribute ", key,
                                                       " is not a number"));
  return v;
}

std::string Node::attr_string(const std::string& key, const std::string& object) const {
  Handle o = open_object(object);
  Handle a = open_attr(o.id(), key, where(object));
  Handle type = checked(H5Aget_type(a.id()), H5Tclose, "H5Aget_type failed");
  TRIDENT_CHECK(H5Tget_class(type.id()) == H5T_STRING, where(object), ": attribute ", key,
                " is not a string");
  if (H5Tis_variable_str(type.id()) > 0) {  // written by h5py and friends
    char* s = nullptr;
    check(H5Aread(a.id(), type.id(), &s), str_cat(where(object), ": cannot read ", key));
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type.id()), '\0');
  check(H5Aread(a.id(), type.id(), out.data()), str_cat(where(object), ": cannot read ", key));
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

File File::create(const std::string& path) {
  silence_hdf5_errors();
  Handle h = checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                     str_cat(path, ": cannot create HDF5 file (directory missing or not writable?)"));
  return File(std::move(h), path);
}

File File::open(const std::string& path) {
  silence_hdf5_errors();
  TRIDENT_CHECK(std::filesystem::exists(path), path, ": no such file");
  TRIDENT_CHECK(H5Fis_hdf5(path.c_str()) > 0, path,
                ": not a readable HDF5 file (truncated or corrupted?)");
  Handle h = checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                     str_cat(path, ": cannot open HDF5 file (truncated or corrupted?)"));
  return File(std::move(h), path);
}

void File::flush() const {
  check(H5Fflush(id(), H5F_SCOPE_GLOBAL), str_cat(file_, ": cannot flush"));
}

}  // namespace trident::hdf5
