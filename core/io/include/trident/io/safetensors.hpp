// Safetensors files (Hugging Face's format for weights): reader and writer on plain buffers.
//
// Layout: 8-byte little-endian u64 N, N bytes of JSON header, then the data section:
//   {"<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<value>", ...}}
// Offsets are relative to the start of the data section (byte 8 + N); data is little-endian,
// row-major (the last dimension contiguous).
//
// SafetensorsFile::open validates the whole header before any read: file size, header length,
// JSON, each entry's dtype/shape/offsets, shape x item size == byte range, overlapping ranges,
// and a data section long enough for every tensor. Each failure is a trident::Error naming the
// file and the problem. Tensors are read lazily, one at a time, from the open stream.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "trident/core/dtype.hpp"

namespace trident {

struct SafetensorsTensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range [begin, end) within the data section
  uint64_t end = 0;
  int64_t numel() const;
};

// "F32", "BF16", ... (safetensors spelling) for a Trident dtype.
const char* safetensors_dtype_name(DType t);

class SafetensorsFile {
 public:
  // Opens and validates `path`; throws trident::Error naming the file and the problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const;
  // Throws trident::Error naming the file and the missing tensor.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  // The "__metadata__" map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Float tensors (F32, F64, BF16, F16) converted to f32; any other dtype throws.
  std::vector<float> read_f32(const std::string& name);
  // Integer tensors (I32, or I64 whose values fit in int32); any other dtype throws.
  std::vector<int32_t> read_i32(const std::string& name);
  // The tensor's raw little-endian bytes, whatever its dtype.
  std::vector<uint8_t> read_bytes(const std::string& name);

 private:
  SafetensorsFile() = default;
  void read_range(const SafetensorsTensorInfo& t, void* dst);

  std::string path_;
  std::ifstream in_;
  uint64_t data_start_ = 0;  // file offset of the data section
  std::map<std::string, SafetensorsTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors (copied) and metadata, then writes one safetensors file: the header padded
// with spaces to an 8-byte boundary, tensors laid out in the order added, written to
// "<path>.tmp" and renamed, so a failed write never leaves a partial file at `path`.
class SafetensorsWriter {
 public:
  // `data` holds product(shape) elements of `dtype`, little-endian, row-major.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape,
               const std::vector<float>& data);
  void add_i32(const std::string& name, const std::vector<int64_t>& shape,
               const std::vector<int32_t>& data);
  void set_metadata(const std::string& key, const std::string& value);
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace trident
