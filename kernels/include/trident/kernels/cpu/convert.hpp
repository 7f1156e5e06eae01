// bf16 <-> f32 / f64 conversions on the CPU.
// bf16 is the upper half of an IEEE f32 (1 sign, 8 exponent, 7 mantissa bits), stored here as
// uint16_t. Widening (bf16 -> f32 / f64) is exact. Narrowing rounds to nearest, ties to even,
// as torch and CUDA's __float2bfloat16_rn do: f32 subnormals round like any other value,
// overflow gives +-infinity, a NaN stays a (quiet) NaN with its sign. f64 -> bf16 rounds once
// (no double rounding through f32).
#pragma once
#include <cstdint>
#include <cstring>

namespace trident::kernels::cpu {

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // adds half an ulp of bf16, minus 1 when the kept lsb is 0
  return static_cast<uint16_t>(u >> 16);
}

// Rounds to f32 toward zero and marks inexact results in the last bit (round to odd); f32 has
// 16 more mantissa bits than bf16, so rounding that to nearest-even is the correctly rounded
// bf16 of d.
uint16_t f64_to_bf16(double d);

// Array conversions (OpenMP above a grain size). out and in must not overlap.
void convert_to_bf16(uint16_t* out, const float* in, int64_t n);
void convert_to_bf16(uint16_t* out, const double* in, int64_t n);
void convert_from_bf16(float* out, const uint16_t* in, int64_t n);
void convert_from_bf16(double* out, const uint16_t* in, int64_t n);

// dst[i] += src[i] converted to dst's type, bitwise the conversion above (or static_cast between
// f32 and f64) followed by the element-wise add: a bf16 dst adds in f32 and rounds once, as the
// CPU's bf16 axpy does. dst and src must not overlap.
void accumulate_converted(float* dst, const uint16_t* src, int64_t n);
void accumulate_converted(double* dst, const uint16_t* src, int64_t n);
void accumulate_converted(uint16_t* dst, const float* src, int64_t n);
void accumulate_converted(float* dst, const double* src, int64_t n);
void accumulate_converted(double* dst, const float* src, int64_t n);

}  // namespace trident::kernels::cpu
