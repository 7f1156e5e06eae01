#include "trident/models/hf_checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/kernels/cpu/convert.hpp"

namespace trident::models {
namespace {

using json = nlohmann::json;

bool file_exists(const std::string& path) {
  return std::ifstream(path).good();
}

int64_t numel_of(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    TRIDENT_CHECK(d >= 0, what, ": negative dimension in its shape");
    n *= d;
  }
  return n;
}

// The position of a dtype in safetensors' Dtype enum (BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16,
// F16, BF16, I32, U32, F32, F64, I64, U64): the library writes tensors in descending order of it.
int safetensors_rank(DType t) {
  switch (t) {
    case DType::U8:
      return 1;
    case DType::F16:
      return 7;
    case DType::BF16:
      return 8;
    case DType::I32:
      return 9;
    case DType::F32:
      return 11;
    case DType::F64:
      return 12;
    case DType::I64:
      return 13;
  }
  return 0;
}

}  // namespace

HFTensor hf_tensor_from_f32(const std::vector<int64_t>& shape, const std::vector<float>& values,
                            DType dtype) {
  const int64_t n = numel_of(shape, "hf_tensor_from_f32");
  TRIDENT_CHECK(size_t(n) == values.size(), "hf_tensor_from_f32: shape holds ", n, " elements but ",
                values.size(), " values were given");
  HFTensor t{dtype, shape, {}};
  if (dtype == DType::F32) {
    t.bytes.resize(values.size() * 4);
    if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  } else if (dtype == DType::BF16) {
    std::vector<uint16_t> bf(values.size());
    kernels::cpu::convert_to_bf16(bf.data(), values.data(), n);
    t.bytes.resize(bf.size() * 2);
    if (!bf.empty()) std::memcpy(t.bytes.data(), bf.data(), t.bytes.size());
  } else {
    throw Error(str_cat("hf_tensor_from_f32: dtype ", dtype_name(dtype),
                        " is not supported (F32 or BF16)"));
  }
  return t;
}

std::vector<float> hf_tensor_to_f32(const HFTensor& t, const std::string& what) {
  const int64_t n = numel_of(t.shape, what);
  TRIDENT_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16, what, " has dtype ",
                safetensors_dtype_name(t.dtype), "; expected F32 or BF16");
  TRIDENT_CHECK(t.bytes.size() == size_t(n) * dtype_size(t.dtype), what, ": ", t.bytes.size(),
                " bytes for ", n, " elements of ", safetensors_dtype_name(t.dtype));
  std::vector<float> out(static_cast<size_t>(n));
  if (t.dtype == DType::F32) {
    if (n) std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  } else {
    std::vector<uint16_t> bf(static_cast<size_t>(n));
    if (n) std::memcpy(bf.data(), t.bytes.data(), t.bytes.size());
    kernels::cpu::convert_from_bf16(out.data(), bf.data(), n);
  }
  return out;
}

std::string hf_safetensors_bytes(const HFTensors& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  std::vector<const HFTensors::value_type*> order;
  for (const auto& entry : tensors) order.push_back(&entry);
  // std::map already orders names bytewise; the sort by dtype must keep that order within one.
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return safetensors_rank(a->second.dtype) > safetensors_rank(b->second.dtype);
  });
  // safetensors holds the metadata in a hash map: with more than one key its order is the
  // library's hash order, which no writer can reproduce; here keys are sorted.
  std::string header = metadata.empty() ? "" : R"("__metadata__":)" + json(metadata).dump();
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const auto& [name, t] = *entry;
    TRIDENT_CHECK(!name.empty() && name != "__metadata__", "safetensors: bad tensor name '", name,
                  "'");
    const int64_t n = numel_of(t.shape, name);
    TRIDENT_CHECK(t.bytes.size() == size_t(n) * dtype_size(t.dtype), "safetensors: tensor '", name,
                  "' has ", t.bytes.size(), " bytes for ", n, " elements of ",
                  safetensors_dtype_name(t.dtype));
    header += std::string(header.empty() ? "" : ",") + json(name).dump() + R"(:{"dtype":")" +
              safetensors_dtype_name(t.dtype) + R"(","shape":)" + json(t.shape).dump() +
              R"(,"data_offsets":[)" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header = "{" + header + "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out.reserve(8 + header.size() + offset);
  out += header;
  for (const auto* entry : order) {
    const std::vector<uint8_t>& b = entry->second.bytes;
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return out;
}

void write_hf_safetensors(const std::string& path, const HFTensors& tensors) {
  const std::string bytes = hf_safetensors_bytes(tensors);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

HFTensors read_hf_safetensors(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  HFTensors out;
  for (const std::string& name : f.names()) {
    const SafetensorsTensorInfo& info = f.info(name);
    out[name] = HFTensor{info.dtype, info.shape, f.read_bytes(name)};
  }
  return out;
}

std::string hf_config_text(const json& config) {
  return config.dump(2) + "\n";  // nlohmann's object keys are sorted, as sort_keys=True
}

json read_hf_config(const std::string& path) {
  std::ifstream in(path);
  TRIDENT_CHECK(in.is_open(), path,
                ": cannot open (a Hugging Face model directory holds config.json and "
                "model.safetensors)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), ")"));
  }
  TRIDENT_CHECK(j.is_object(), path, ": not a JSON object");
  return j;
}

std::string hf_weights_path(const std::string& dir) {
  const std::string weights = dir + "/model.safetensors";
  if (file_exists(weights)) return weights;
  TRIDENT_CHECK(!file_exists(dir + "/model.safetensors.index.json"), dir,
                ": sharded checkpoints (model.safetensors.index.json) are not supported");
  TRIDENT_CHECK(!file_exists(dir + "/pytorch_model.bin"), dir,
                ": has pytorch_model.bin but no model.safetensors; Trident reads only "
                "safetensors (convert it, e.g. save_pretrained(..., safe_serialization=True))");
  throw Error(str_cat(dir, ": no model.safetensors"));
}

void save_hf_checkpoint(const std::string& dir, const HFCheckpoint& ck) {
  TRIDENT_CHECK(ck.config.is_object(), dir, ": the config to write is not a JSON object");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TRIDENT_CHECK(!ec, dir, ": cannot create the directory (", ec.message(), ")");
  write_hf_safetensors(dir + "/model.safetensors", ck.tensors);
  const std::string text = hf_config_text(ck.config);
  write_file_atomically(dir + "/config.json", [&](std::ostream& out) {
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  });
}

HFCheckpoint load_hf_checkpoint(const std::string& dir) {
  HFCheckpoint ck;
  ck.config = read_hf_config(dir + "/config.json");
  ck.tensors = read_hf_safetensors(hf_weights_path(dir));
  return ck;
}

}  // namespace trident::models
