// Trident's CUDA emulation: __nv_bfloat16 as 16 stored bits with fp32 conversions that round to
// nearest even (NaN stays NaN), the functions of the real header that Trident uses.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16_raw {
  unsigned short x;
};

namespace cuemu::bf16 {
inline unsigned short from_float_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>(u >> 16);
}
inline float to_float(unsigned short h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace cuemu::bf16

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(cuemu::bf16::from_float_rn(f)) {}
  __nv_bfloat16(double f) : __x(cuemu::bf16::from_float_rn(static_cast<float>(f))) {}
  __nv_bfloat16(int i) : __x(cuemu::bf16::from_float_rn(static_cast<float>(i))) {}
  operator float() const { return cuemu::bf16::to_float(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
  __nv_bfloat16& operator=(float f) {
    __x = cuemu::bf16::from_float_rn(f);
    return *this;
  }
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

inline __nv_bfloat16 __float2bfloat16(float f) {
  return __nv_bfloat16(f);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16(f);
}
inline float __bfloat162float(__nv_bfloat16 h) {
  return cuemu::bf16::to_float(h.__x);
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__nv_bfloat16(a), __nv_bfloat16(b)};
}
inline float __low2float(__nv_bfloat162 h) {
  return __bfloat162float(h.x);
}
inline float __high2float(__nv_bfloat162 h) {
  return __bfloat162float(h.y);
}
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
  __nv_bfloat16 h;
  h.__x = u;
  return h;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) {
  return h.__x;
}
