#include "trident/io/safetensors.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this reader assumes a little-endian host");

namespace trident {
namespace {

using json = nlohmann::json;

// Largest header we accept (the reference implementation's limit is 100 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

bool dtype_from_safetensors(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::F32}, {"F64", DType::F64}, {"BF16", DType::BF16}, {"F16", DType::F16},
      {"I32", DType::I32}, {"I64", DType::I64}, {"U8", DType::U8}};
  for (const auto& [name, t] : table) {
    if (s == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

// Dtypes of the safetensors spec that Trident has no DType for.
bool is_other_safetensors_dtype(const std::string& s) {
  static const char* const others[] = {"BOOL",    "I8",      "I16",     "U16",     "U32",
                                       "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
                                       "F6_E2M3", "F6_E3M2", "C64"};
  return std::any_of(std::begin(others), std::end(others), [&](const char* o) { return s == o; });
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string range_str(const SafetensorsTensorInfo& t) {
  return str_cat("[", t.begin, ", ", t.end, "]");
}

// Product of dims as an element count; throws when it does not fit in int64.
int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    TRIDENT_CHECK(d >= 0, what, ": negative dimension in shape ", shape_str(shape));
    TRIDENT_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / 8 / d, what, ": shape ",
                  shape_str(shape), " is too large");
    n *= d;
  }
  return n;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {  // inf / nan
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal: mant * 2^-24, exact in f32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.in_.open(path, std::ios::binary);
  TRIDENT_CHECK(f.in_.is_open(), path, ": cannot open: ", std::strerror(errno));
  f.in_.seekg(0, std::ios::end);
  const auto end_pos = f.in_.tellg();
  TRIDENT_CHECK(end_pos >= 0, path, ": cannot determine the file size");
  const uint64_t file_size = static_cast<uint64_t>(end_pos);
  f.in_.seekg(0);

  TRIDENT_CHECK(file_size >= 8, path, ": not a safetensors file: ", file_size,
                " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  f.in_.read(reinterpret_cast<char*>(len_bytes), 8);
  TRIDENT_CHECK(f.in_.good(), path, ": cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  TRIDENT_CHECK(header_len <= file_size - 8, path, ": header length ", header_len,
                " runs past the end of the file (", file_size,
                " bytes); the file is truncated or not a safetensors file");
  TRIDENT_CHECK(header_len <= kMaxHeaderBytes, path, ": header length ", header_len,
                " exceeds the 100 MB limit of the format");
  TRIDENT_CHECK(header_len >= 2, path, ": header length ", header_len,
                " is too small to hold a JSON object");

  std::string header(header_len, '\0');
  f.in_.read(header.data(), static_cast<std::streamsize>(header_len));
  TRIDENT_CHECK(f.in_.good(), path, ": cannot read the ", header_len, "-byte header");
  f.data_start_ = 8 + header_len;
  const uint64_t data_size = file_size - f.data_start_;

  json j;
  try {
    j = json::parse(header);
  } catch (const json::parse_error& e) {
    throw Error(str_cat(path, ": header is not valid JSON (", e.what(), ")"));
  }
  TRIDENT_CHECK(j.is_object(), path, ": header is JSON but not an object (it is ", j.type_name(),
                ")");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      TRIDENT_CHECK(v.is_object(), path, ": __metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        TRIDENT_CHECK(m.value().is_string(), path, ": __metadata__ entry '", m.key(),
                      "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = str_cat(path, ": tensor '", name, "'");
    TRIDENT_CHECK(v.is_object(), what, ": header entry is not an object");
    TRIDENT_CHECK(v.contains("dtype") && v["dtype"].is_string(), what,
                  ": missing or non-string \"dtype\"");
    TRIDENT_CHECK(v.contains("shape") && v["shape"].is_array(), what,
                  ": missing or non-array \"shape\"");
    TRIDENT_CHECK(
        v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
        what, ": \"data_offsets\" must be an array [begin, end]");

    SafetensorsTensorInfo t;
    const std::string dt = v["dtype"].get<std::string>();
    if (!dtype_from_safetensors(dt, &t.dtype)) {
      TRIDENT_CHECK(!is_other_safetensors_dtype(dt), what, " has dtype ", dt,
                    ", which Trident does not read (it reads F32, F64, BF16, F16, I32, I64, U8)");
      throw Error(str_cat(what, " has unknown dtype '", dt, "'"));
    }
    for (const json& d : v["shape"]) {
      TRIDENT_CHECK(d.is_number_unsigned(), what, ": shape ", v["shape"].dump(),
                    " must hold non-negative integers");
      TRIDENT_CHECK(d.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()), what,
                    ": dimension ", d.get<uint64_t>(), " is too large");
      t.shape.push_back(d.get<int64_t>());
    }
    for (const json& o : v["data_offsets"]) {
      TRIDENT_CHECK(o.is_number_unsigned(), what, ": data_offsets ", v["data_offsets"].dump(),
                    " must be non-negative integers");
    }
    t.begin = v["data_offsets"][0].get<uint64_t>();
    t.end = v["data_offsets"][1].get<uint64_t>();
    TRIDENT_CHECK(t.begin <= t.end, what, ": data_offsets ", range_str(t), " are reversed");
    const uint64_t need = uint64_t(checked_numel(t.shape, what)) * dtype_size(t.dtype);
    TRIDENT_CHECK(need == t.end - t.begin, what, " (", dt, ", shape ", shape_str(t.shape),
                  ") needs ", need, " bytes but its data_offsets ", range_str(t), " span ",
                  t.end - t.begin);
    f.tensors_.emplace(name, std::move(t));
  }

  // Byte ranges, in file order: no overlaps, and all inside the data section.
  std::vector<std::pair<const std::string*, const SafetensorsTensorInfo*>> order;
  for (const auto& [name, t] : f.tensors_) {
    if (t.end > t.begin) order.emplace_back(&name, &t);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  uint64_t max_end = 0;
  bool contiguous = true;  // the ranges tile [0, max_end) with no gap
  for (size_t i = 0; i < order.size(); ++i) {
    const SafetensorsTensorInfo& t = *order[i].second;
    if (i > 0) {
      const SafetensorsTensorInfo& prev = *order[i - 1].second;
      TRIDENT_CHECK(t.begin >= prev.end, path, ": tensors '", *order[i - 1].first, "' ",
                    range_str(prev), " and '", *order[i].first, "' ", range_str(t),
                    " overlap in the data section");
    }
    if (t.begin != max_end) contiguous = false;
    max_end = std::max(max_end, t.end);
  }
  if (max_end > data_size) {
    TRIDENT_CHECK(!contiguous, path, ": truncated: tensors need ", max_end,
                  " bytes after the header, the file holds ", data_size);
    for (const auto& [name, t] : order) {
      TRIDENT_CHECK(t->end <= data_size, path, ": tensor '", *name, "' data_offsets ",
                    range_str(*t), " run past the end of the data section (", data_size, " bytes)");
    }
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

bool SafetensorsFile::has(const std::string& name) const {
  return tensors_.count(name) != 0;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  TRIDENT_CHECK(it != tensors_.end(), path_, ": no tensor named '", name, "'");
  return it->second;
}

void SafetensorsFile::read_range(const SafetensorsTensorInfo& t, void* dst) {
  const uint64_t n = t.end - t.begin;
  if (n == 0) return;
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
  in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  TRIDENT_CHECK(in_.good() && uint64_t(in_.gcount()) == n, path_, ": reading ", n,
                " bytes at data offset ", t.begin, " failed (was the file changed?)");
}

std::vector<uint8_t> SafetensorsFile::read_bytes(const std::string& name) {
  const SafetensorsTensorInfo& t = info(name);
  std::vector<uint8_t> out(t.end - t.begin);
  read_range(t, out.data());
  return out;
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) {
  const SafetensorsTensorInfo& t = info(name);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32:
      read_range(t, out.data());
      break;
    case DType::F64: {
      std::vector<double> tmp(n);
      read_range(t, tmp.data());
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(tmp[i]);
      break;
    }
    case DType::BF16:
    case DType::F16: {
      std::vector<uint16_t> tmp(n);
      read_range(t, tmp.data());
      const bool bf = t.dtype == DType::BF16;
      for (size_t i = 0; i < n; ++i) out[i] = bf ? bf16_to_float(tmp[i]) : half_to_float(tmp[i]);
      break;
    }
    default:
      throw Error(str_cat(path_, ": tensor '", name, "' has dtype ",
                          safetensors_dtype_name(t.dtype),
                          "; reading it as f32 needs F32, F64, BF16 or F16"));
  }
  return out;
}

std::vector<int32_t> SafetensorsFile::read_i32(const std::string& name) {
  const SafetensorsTensorInfo& t = info(name);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<int32_t> out(n);
  if (t.dtype == DType::I32) {
    read_range(t, out.data());
  } else if (t.dtype == DType::I64) {
    std::vector<int64_t> tmp(n);
    read_range(t, tmp.data());
    for (size_t i = 0; i < n; ++i) {
      TRIDENT_CHECK(tmp[i] >= std::numeric_limits<int32_t>::min() &&
                        tmp[i] <= std::numeric_limits<int32_t>::max(),
                    path_, ": tensor '", name, "' element ", i, " = ", tmp[i],
                    " does not fit in int32");
      out[i] = static_cast<int32_t>(tmp[i]);
    }
  } else {
    throw Error(str_cat(path_, ": tensor '", name, "' has dtype ", safetensors_dtype_name(t.dtype),
                        "; reading it as i32 needs I32 or I64"));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data) {
  TRIDENT_CHECK(!name.empty(), "safetensors: tensor names must not be empty");
  TRIDENT_CHECK(name != "__metadata__",
                "safetensors: '__metadata__' is reserved, not a tensor name");
  for (const Entry& e : entries_) {
    TRIDENT_CHECK(e.name != name, "safetensors: tensor '", name, "' added twice");
  }
  const int64_t numel = checked_numel(shape, str_cat("safetensors: tensor '", name, "'"));
  const size_t bytes = static_cast<size_t>(numel) * dtype_size(dtype);
  TRIDENT_CHECK(bytes == 0 || data != nullptr, "safetensors: tensor '", name,
                "' has no data pointer");
  Entry e{name, dtype, shape, std::vector<uint8_t>(bytes)};
  if (bytes) std::memcpy(e.bytes.data(), data, bytes);
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& data) {
  const int64_t numel = checked_numel(shape, str_cat("safetensors: tensor '", name, "'"));
  TRIDENT_CHECK(size_t(numel) == data.size(), "safetensors: tensor '", name, "' has shape ",
                shape_str(shape), " (", numel, " elements) but ", data.size(), " values");
  add(name, DType::F32, shape, data.data());
}

void SafetensorsWriter::add_i32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<int32_t>& data) {
  const int64_t numel = checked_numel(shape, str_cat("safetensors: tensor '", name, "'"));
  TRIDENT_CHECK(size_t(numel) == data.size(), "safetensors: tensor '", name, "' has shape ",
                shape_str(shape), " (", numel, " elements) but ", data.size(), " values");
  add(name, DType::I32, shape, data.data());
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
  json header = json::object();
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    header[e.name] = {{"dtype", safetensors_dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data starts 8-byte aligned

  write_file_atomically(path, [&](std::ostream& out) {
    unsigned char len_bytes[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i, n >>= 8) len_bytes[i] = static_cast<unsigned char>(n & 0xff);
    out.write(reinterpret_cast<const char*>(len_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Entry& e : entries_) {
      out.write(reinterpret_cast<const char*>(e.bytes.data()),
                static_cast<std::streamsize>(e.bytes.size()));
    }
  });
}

}  // namespace trident
