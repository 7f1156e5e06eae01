// bf16 conversions (see convert.hpp for the rounding rules).
#include "trident/kernels/cpu/convert.hpp"

#include <cmath>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {

using detail::kParallelGrain;

uint16_t f64_to_bf16(double d) {
  if (std::isnan(d)) return f32_to_bf16(static_cast<float>(d));
  float f = static_cast<float>(d);  // to nearest: may have rounded away from zero
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  if (static_cast<double>(f) != d) {  // inexact: set the sticky bit
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    u |= 1u;
    std::memcpy(&f, &u, sizeof f);
  }
  return f32_to_bf16(f);
}

void convert_to_bf16(uint16_t* out, const float* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}

void convert_to_bf16(uint16_t* out, const double* in, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = f64_to_bf16(in[i]);
}

void convert_from_bf16(float* out, const uint16_t* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(in[i]);
}

void convert_from_bf16(double* out, const uint16_t* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(bf16_to_f32(in[i]));
}

void accumulate_converted(float* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] += bf16_to_f32(src[i]);
}

void accumulate_converted(double* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] += static_cast<double>(bf16_to_f32(src[i]));
}

void accumulate_converted(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = f32_to_bf16(bf16_to_f32(dst[i]) + bf16_to_f32(f32_to_bf16(src[i])));
  }
}

void accumulate_converted(float* dst, const double* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] += static_cast<float>(src[i]);
}

void accumulate_converted(double* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] += static_cast<double>(src[i]);
}

}  // namespace trident::kernels::cpu
