#include "trident/io/checkpoint.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

namespace trident {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = kCheckpointFormat;
constexpr int64_t kFormatVersion = kCheckpointFormatVersion;

uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

std::string dataset_path(const std::string& param, const std::string& state) {
  return "params/" + param + "/" + state;
}

}  // namespace

int64_t Hyperslab::numel() const {
  int64_t n = 1;
  for (int64_t c : count) n *= c;
  return n;
}

uint64_t checksum64(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ bytes;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix(w + i)) * 0x100000001b3ULL;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p + i, bytes - i);
  return mix(h ^ mix(tail + i + 1));
}

// --- writer ------------------------------------------------------------------------------

CheckpointWriter::CheckpointWriter(std::string path)
    : path_(std::move(path)), tmp_(temporary_path_for(path_)) {
  hdf5::Handle fapl = hdf5::checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
  hdf5::check(H5Pset_libver_bounds(fapl.id(), kCheckpointLibver, kCheckpointLibver),
              str_cat(tmp_, ": cannot ask for the HDF5 1.10 file format"));
  file_.emplace(hdf5::File::create(tmp_, fapl.id()));
  file_->set_attr("format", kFormat);
  file_->set_attr("format_version", kFormatVersion);
  params_.emplace(file_->create_group("params"));
}

CheckpointWriter::~CheckpointWriter() {
  if (committed_) return;
  params_.reset();
  file_.reset();
  std::remove(tmp_.c_str());
}

void CheckpointWriter::set_meta(const std::string& key, int64_t value) {
  file_->set_attr(key, value);
}
void CheckpointWriter::set_meta(const std::string& key, double value) {
  file_->set_attr(key, value);
}
void CheckpointWriter::set_meta(const std::string& key, const std::string& value) {
  file_->set_attr(key, value);
}

void CheckpointWriter::add(const std::string& param, const std::string& state,
                           const std::vector<int64_t>& shape, const float* data) {
  TRIDENT_CHECK(!committed_, path_, ": add after commit");
  TRIDENT_CHECK(param.find('/') == std::string::npos, "checkpoint: parameter name '", param,
                "' contains '/'");
  if (!params_->has(param)) params_->create_group(param);
  const hdf5::Node group = params_->open_group(param);
  group.write_dataset(state, hdf5::Elem::F32, shape, data, hdf5::chunk_rows_for(shape),
                      /*fletcher32=*/true);
}

void CheckpointWriter::commit() {
  TRIDENT_CHECK(!committed_, path_, ": committed twice");
  params_.reset();
  file_->flush();
  file_->close();  // throws when the close (which writes what is still buffered) fails
  file_.reset();
  commit_temporary_file(tmp_, path_);
  committed_ = true;
}

// --- reader ------------------------------------------------------------------------------

CheckpointReader::CheckpointReader(const std::string& path)
    : path_(path), file_(hdf5::File::open(path)) {
  TRIDENT_CHECK(file_.has_attr("format") && file_.attr_string("format") == kFormat, path,
                ": not a Trident checkpoint (no format = \"", kFormat, "\" attribute)");
  const int64_t v = file_.attr_int("format_version");
  TRIDENT_CHECK(v == kFormatVersion, path, ": checkpoint format version ", v,
                " is not supported (this build reads version ", kFormatVersion, ")");
  TRIDENT_CHECK(file_.has("params"), path, ": checkpoint has no /params group");
}

bool CheckpointReader::has_meta(const std::string& key) const {
  return file_.has_attr(key);
}
int64_t CheckpointReader::meta_int(const std::string& key) const {
  return file_.attr_int(key);
}
double CheckpointReader::meta_double(const std::string& key) const {
  return file_.attr_double(key);
}
std::string CheckpointReader::meta_string(const std::string& key) const {
  return file_.attr_string(key);
}

std::vector<std::string> CheckpointReader::params() const {
  auto names = file_.open_group("params").children();
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> CheckpointReader::states(const std::string& param) const {
  return file_.open_group("params").open_group(param).children();
}

bool CheckpointReader::has(const std::string& param, const std::string& state) const {
  const hdf5::Node params = file_.open_group("params");
  return params.has(param) && params.open_group(param).has(state);
}

std::vector<int64_t> CheckpointReader::shape(const std::string& param,
                                             const std::string& state) const {
  TRIDENT_CHECK(has(param, state), path_, ": no /", dataset_path(param, state),
                " in the checkpoint");
  return file_.dataset_info(dataset_path(param, state)).shape;
}

std::string CheckpointReader::dataset_or_throw(const std::string& param,
                                               const std::string& state) const {
  TRIDENT_CHECK(has(param, state), path_, ": no /", dataset_path(param, state),
                " in the checkpoint");
  return dataset_path(param, state);
}

std::vector<float> CheckpointReader::read(const std::string& param,
                                          const std::string& state) const {
  const std::string ds = dataset_or_throw(param, state);
  const auto info = file_.dataset_info(ds);
  std::vector<float> out(static_cast<size_t>(info.numel()));
  try {
    file_.read_dataset(ds, hdf5::Elem::F32, out.data());
  } catch (const hdf5::Error& e) {  // a Fletcher-32 mismatch, or a chunk past the end
    throw Error(
        str_cat(path_, ": dataset /", ds, " is corrupted or truncated (HDF5: ", e.reason(), ")"));
  }
  if (file_.has_attr("checksum", ds)) {  // written before the Fletcher-32 filter
    const std::string want = file_.attr_string("checksum", ds);
    const std::string got = hex64(checksum64(out.data(), out.size() * sizeof(float)));
    TRIDENT_CHECK(got == want, path_, ": dataset /", ds, " is corrupted (checksum ", got,
                  ", recorded ", want, ")");
  }
  bytes_read_ += static_cast<int64_t>(out.size() * sizeof(float));
  return out;
}

void CheckpointReader::read_hyperslabs(const std::string& param, const std::string& state,
                                       const std::vector<Hyperslab>& boxes, float* out) const {
  const std::string ds = dataset_or_throw(param, state);
  int64_t total = 0;
  for (const auto& b : boxes) total += b.numel();
  if (total == 0) return;
  if (file_.has_attr("checksum", ds)) read(param, state);  // verifies the whole dataset
  const hdf5::Dataset d = file_.open_dataset(ds);
  const std::vector<int64_t>& shape = d.info().shape;
  // One read per box, through a memory space of the box's shape (HDF5 maps same-shape
  // selections chunk by chunk; a flat one against an N-d box goes element by element). Boxes
  // are disjoint and in row-major order of the full tensor, as `out` is.
  float* next = out;
  for (const auto& b : boxes) {
    if (b.numel() == 0) continue;
    TRIDENT_CHECK(b.start.size() == shape.size() && b.count.size() == shape.size(), path_, ": /",
                  ds, ": a hyperslab of ", b.start.size(), " dims for a tensor of ", shape.size());
    for (size_t k = 0; k < shape.size(); ++k) {
      TRIDENT_CHECK(b.start[k] >= 0 && b.count[k] >= 0 && b.start[k] + b.count[k] <= shape[k],
                    path_, ": /", ds, ": hyperslab outside the tensor");
    }
    const std::vector<hsize_t> start(b.start.begin(), b.start.end()),
        count(b.count.begin(), b.count.end());
    hdf5::Handle fspace =
        hdf5::checked(H5Dget_space(d.id()), H5Sclose, str_cat(path_, ": /", ds, ": no shape"));
    hdf5::check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, start.data(), nullptr,
                                    count.data(), nullptr),
                str_cat(path_, ": /", ds, ": bad hyperslab"));
    hdf5::Handle mspace =
        hdf5::checked(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                      H5Sclose, str_cat(path_, ": /", ds, ": bad hyperslab"));
    try {
      hdf5::check(H5Dread(d.id(), H5T_NATIVE_FLOAT, mspace.id(), fspace.id(), H5P_DEFAULT, next),
                  "cannot read");
    } catch (const hdf5::Error& e) {  // a Fletcher-32 mismatch, or a chunk past the end
      throw Error(
          str_cat(path_, ": dataset /", ds, " is corrupted or truncated (HDF5: ", e.reason(), ")"));
    }
    next += b.numel();
  }
  bytes_read_ += total * static_cast<int64_t>(sizeof(float));
}

// --- directory -----------------------------------------------------------------------------

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(step_(\d+)\.h5)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern))
      out.emplace_back(std::stoll(m[1]), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_checkpoint(const std::string& dir) {
  const auto all = list_checkpoints(dir);
  return all.empty() ? std::string() : all.back().second;
}

void prune_checkpoints(const std::string& dir, int keep) {
  std::error_code ec;
  if (keep > 0) {
    const auto all = list_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i)
      fs::remove(all[i].second, ec);
  }
  static const std::regex stale(R"(step_\d+\.h5\.tmp\.\d+)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (std::regex_match(entry.path().filename().string(), stale)) fs::remove(entry.path(), ec);
  }
}

}  // namespace trident
