// Inverted dropout with a counter-based random stream: element i of a call with (seed, offset)
// is dropped when uniform(hash(seed, offset + i)) < p, so the mask is reproducible on any
// device and thread count. Kept elements are scaled by 1 / (1 - p). p must lie in [0, 1]
// (std::invalid_argument otherwise); p == 0 keeps everything (mask 1), p == 1 drops everything.
// The stream (for CUDA parity): key = mix(seed), h = mix(key + (index + 1) * 0x9E3779B97F4A7C15),
// uniform = (h >> 40) * 2^-24, with mix the splitmix64 finaliser
// (z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// mask (n) receives 0 or 1/(1-p) per element; out = inp * mask.
template <typename T>
void dropout_forward(T* out, T* mask, const T* inp, int64_t n, float p, uint64_t seed,
                     uint64_t offset);
// dinp = dout * mask.
template <typename T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n);

// The uniform [0,1) number the stream gives element `index` (exposed for tests and CUDA parity).
float counter_uniform(uint64_t seed, uint64_t index);

}  // namespace trident::kernels::cpu
