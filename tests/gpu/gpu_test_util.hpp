// Helpers of the GPU tests: seeded random inputs, bf16 rounding on the host, device uploads
// with NaN-poisoned outputs, and the error measure ||out - ref|| / ||ref||.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/tensor.hpp"

namespace trident::gpu_test {

inline Device gpu() {
  return Device::cuda(0);
}

// The seed of the random inputs: fixed, so a failure reproduces; TRIDENT_TEST_SEED=N picks
// another. gpu_main prints it once; callers name it in INFO.
inline uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* v = std::getenv("TRIDENT_TEST_SEED");
    return v != nullptr && v[0] != '\0' ? std::strtoull(v, nullptr, 10) : uint64_t{20240917};
  }();
  return seed;
}

// Round-to-nearest-even to bf16, kept as its 16 bits / widened back to float.
inline uint16_t to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float round_bf16(float x) {
  return from_bf16_bits(to_bf16_bits(x));
}

// ||a - b|| / max(||b||, tiny); infinite when a holds a NaN or infinity that b does not.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) && std::isfinite(b[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    diff += d * d;
    ref += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-30);
}

// A device buffer of `n` elements of `t` holding `values` (rounded to bf16 for bf16).
inline Tensor upload(const std::vector<float>& values, DType t, Device d = gpu()) {
  Tensor out = Tensor::empty({static_cast<int64_t>(values.size())}, t, d);
  if (values.empty()) return out;
  if (t == DType::F32) {
    copy_bytes(out.raw_data(), d, values.data(), Device::cpu(), values.size() * 4);
  } else {
    REQUIRE(t == DType::BF16);
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i) bits[i] = to_bf16_bits(values[i]);
    copy_bytes(out.raw_data(), d, bits.data(), Device::cpu(), bits.size() * 2);
  }
  return out;
}

inline Tensor upload_i32(const std::vector<int32_t>& values, Device d = gpu()) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, d);
}

// An output buffer filled with NaN, so an element the kernel never writes fails the check.
inline Tensor poisoned(int64_t n, DType t, Device d = gpu()) {
  return upload(std::vector<float>(static_cast<size_t>(n), NAN), t, d);
}

inline std::vector<float> download(const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 0) return out;
  if (t.dtype() == DType::F32) {
    copy_bytes(out.data(), Device::cpu(), t.raw_data(), t.device(), out.size() * 4);
  } else {
    REQUIRE(t.dtype() == DType::BF16);
    std::vector<uint16_t> bits(out.size());
    copy_bytes(bits.data(), Device::cpu(), t.raw_data(), t.device(), bits.size() * 2);
    for (size_t i = 0; i < out.size(); ++i) out[i] = from_bf16_bits(bits[i]);
  }
  return out;
}

inline std::vector<float> normal(size_t n, std::mt19937_64& rng, float scale = 1.0f,
                                 float shift = 0.0f) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = shift + scale * dist(rng);
  return v;
}

inline std::vector<float> uniform(size_t n, std::mt19937_64& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace trident::gpu_test
