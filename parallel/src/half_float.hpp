// bf16 / f16 <-> f32 conversions for reductions staged in f32 (private to trident_parallel).
// f32 -> half rounds to nearest even; NaN stays NaN, overflow becomes infinity.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "trident/kernels/cpu/convert.hpp"

namespace trident::half_float {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// bf16: the CPU kernels' conversions (kernels/cpu/convert.hpp), one definition for the job.
using kernels::cpu::bf16_to_f32;
using kernels::cpu::f32_to_bf16;

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return float_of(sign);
    exp = 113;  // subnormal: normalise the mantissa
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
    return float_of(sign | (exp << 23) | (mant << 13));
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

// F. Giesen's float_to_half_fast3_rtne: exact round-to-nearest-even, subnormals included.
inline uint16_t f32_to_f16(float value) {
  const uint32_t f32_infinity = 255u << 23;
  const uint32_t f16_max = (127u + 16u) << 23;
  const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t f = bits_of(value);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  uint32_t out;
  if (f >= f16_max) {
    out = f > f32_infinity ? 0x7e00u : 0x7c00u;
  } else if (f < (113u << 23)) {
    out = bits_of(float_of(f) + float_of(denorm_magic)) - denorm_magic;
  } else {
    const uint32_t mant_odd = (f >> 13) & 1u;
    f += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    f += mant_odd;
    out = f >> 13;
  }
  return static_cast<uint16_t>(out | (sign >> 16));
}

// Converts n 16-bit values (bf16 when `bf16`, else f16) to f32 and back.
inline void to_f32(const void* src, float* dst, size_t n, bool bf16) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (size_t i = 0; i < n; ++i) dst[i] = bf16 ? bf16_to_f32(s[i]) : f16_to_f32(s[i]);
}
inline void from_f32(const float* src, void* dst, size_t n, bool bf16) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (size_t i = 0; i < n; ++i) d[i] = bf16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

}  // namespace trident::half_float
