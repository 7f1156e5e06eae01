// Hugging Face checkpoint directories (config.json + model.safetensors), written byte for byte
// as transformers' save_pretrained writes them, and read back. Model-independent: a model's
// import/export (hf_gpt2.hpp, ...) maps its parameters to HF names and layouts on top of this.
//
// model.safetensors, laid out as the safetensors library (safetensors/src/tensor.rs) does:
//   u64 little-endian N | N bytes of JSON header | data
//   header: {"__metadata__":{"format":"pt"},"<name>":{"dtype":"F32","shape":[d0,..],
//            "data_offsets":[begin,end]},...}   compact JSON, "__metadata__" first, then every
//            tensor in data order; padded with spaces to a multiple of 8 bytes.
//   data order: by dtype, descending in safetensors' Dtype enum (I64 > F64 > F32 > I32 > BF16 >
//   F16 > U8), then by name (bytewise); each tensor little-endian, row-major.
// config.json, as PretrainedConfig.to_json_file: keys sorted, two-space indent, final newline.
//
// Tensors travel as raw bytes with their dtype and shape (HFTensor), so any model and dtype
// round-trips exactly; hf_tensor_from_f32 / hf_tensor_to_f32 convert f32 values.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trident/core/dtype.hpp"

namespace trident::models {

struct HFTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // product(shape) elements of dtype, little-endian, row-major
};
using HFTensors = std::map<std::string, HFTensor>;  // HF name -> tensor

struct HFCheckpoint {
  nlohmann::json config;  // the parsed config.json (an object)
  HFTensors tensors;
};

// `values` (row-major, product(shape) of them) stored as `dtype`: F32 as is, BF16 rounded to
// nearest even (as torch's .to(torch.bfloat16)). Other dtypes throw.
HFTensor hf_tensor_from_f32(const std::vector<int64_t>& shape, const std::vector<float>& values,
                            DType dtype = DType::F32);
// F32 and BF16 tensors as f32 values (exact); other dtypes throw naming `what` (F16 and F64
// files are read as f32 by SafetensorsFile::read_f32).
std::vector<float> hf_tensor_to_f32(const HFTensor& t, const std::string& what = "tensor");

// The model.safetensors bytes for `tensors` (layout above) with `metadata` (save_pretrained's
// {"format": "pt"} by default; an empty map writes no "__metadata__" entry).
std::string hf_safetensors_bytes(const HFTensors& tensors,
                                 const std::map<std::string, std::string>& metadata = {
                                     {"format", "pt"}});
// Writes them to `path` (through a temporary file and a rename).
void write_hf_safetensors(const std::string& path, const HFTensors& tensors);
// Every tensor of a safetensors file (validated by SafetensorsFile; any order, any padding).
HFTensors read_hf_safetensors(const std::string& path);

// config.json text for `config`: keys sorted, indent 2, "\n" at the end (json.dumps(...,
// indent=2, sort_keys=True) + "\n").
std::string hf_config_text(const nlohmann::json& config);
// Parses `path`; throws trident::Error naming the file when it is missing or not a JSON object.
nlohmann::json read_hf_config(const std::string& path);

// `dir`/model.safetensors after checking that `dir` holds a single-file safetensors
// checkpoint: a sharded one (model.safetensors.index.json) or a pytorch_model.bin alone is an
// error that says so.
std::string hf_weights_path(const std::string& dir);

// Creates `dir` if needed and writes config.json and model.safetensors into it.
void save_hf_checkpoint(const std::string& dir, const HFCheckpoint& checkpoint);
// Reads `dir`/config.json and every tensor of `dir`/model.safetensors.
HFCheckpoint load_hf_checkpoint(const std::string& dir);

}  // namespace trident::models
