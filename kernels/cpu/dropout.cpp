// Inverted dropout from a counter-based stream: element i of a call (seed, offset) draws
// u = counter_uniform(seed, offset + i) and is dropped when u < p; kept elements are scaled by
// 1/(1-p). The draw depends only on (seed, index), so masks match for any thread count or device.
// counter_uniform is the splitmix64 stream of key = mix(seed) at position `index`:
//   h = mix(key + (index + 1) * 0x9E3779B97F4A7C15), u = (h >> 40) * 2^-24  (top 24 bits),
// where mix(z) is the splitmix64 finaliser (xor-shift 30/27/31, multipliers 0xBF58476D1CE4E5B9,
// 0x94D049BB133111EB).
#include "trident/kernels/cpu/dropout.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint64_t stream_key(uint64_t seed) {
  return mix64(seed);
}

inline float uniform_at(uint64_t key, uint64_t index) {
  const uint64_t h = mix64(key + (index + 1) * kGolden);
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}

}  // namespace

float counter_uniform(uint64_t seed, uint64_t index) {
  return uniform_at(stream_key(seed), index);
}

template <typename T>
void dropout_forward(T* out, T* mask, const T* inp, int64_t n, float p, uint64_t seed,
                     uint64_t offset) {
  if (!(p >= 0.0f && p <= 1.0f)) {
    throw std::invalid_argument("dropout_forward: p = " + std::to_string(p) + " is outside [0, 1]");
  }
  if (p == 0.0f || p == 1.0f) {  // no draws needed: keep all (copy) or drop all
    const T m = p == 0.0f ? T(1) : T(0);
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      mask[i] = m;
      out[i] = inp[i] * m;
    }
    return;
  }
  const uint64_t key = stream_key(seed);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(p)));
#pragma omp parallel for schedule(static) if (n > detail::kParallelGrain / 4)
  for (int64_t i = 0; i < n; ++i) {
    const T m = uniform_at(key, offset + static_cast<uint64_t>(i)) < p ? T(0) : keep_scale;
    mask[i] = m;
    out[i] = inp[i] * m;
  }
}

template <typename T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * mask[i];
}

template void dropout_forward<float>(float*, float*, const float*, int64_t, float, uint64_t,
                                     uint64_t);
template void dropout_forward<double>(double*, double*, const double*, int64_t, float, uint64_t,
                                      uint64_t);
template void dropout_backward<float>(float*, const float*, const float*, int64_t);
template void dropout_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace trident::kernels::cpu
