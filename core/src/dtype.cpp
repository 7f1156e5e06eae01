#include "trident/core/dtype.hpp"

#include "trident/core/device.hpp"
#include "trident/core/error.hpp"

namespace trident {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
    case DType::U8:
      return "u8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "f32" || name == "float32" || name == "fp32") return DType::F32;
  if (name == "f64" || name == "float64" || name == "fp64") return DType::F64;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "float16" || name == "fp16") return DType::F16;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "i64" || name == "int64") return DType::I64;
  if (name == "u8" || name == "uint8") return DType::U8;
  throw Error(str_cat("unknown dtype '", name, "' (expected f32, f64, bf16, f16, i32, i64, u8)"));
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : str_cat("cuda:", index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string num = s.substr(5);
    TRIDENT_CHECK(!num.empty() && num.find_first_not_of("0123456789") == std::string::npos,
                  "bad device '", s, "' (expected cpu, cuda or cuda:N)");
    return cuda(std::stoi(num));
  }
  throw Error(str_cat("bad device '", s, "' (expected cpu, cuda or cuda:N)"));
}

}  // namespace trident
