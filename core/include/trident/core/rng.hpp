// Counter-based random numbers: value i of stream (seed) is a pure function of (seed, i), so
// initialisation and sampling give the same numbers on any thread count, device or layout.
#pragma once
#include <cstdint>

#include "trident/core/tensor.hpp"

namespace trident {

class Generator {
 public:
  explicit Generator(uint64_t seed = 1337) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }

  // Fills `t` (any device, f32/f64) in place; advances the stream by numel.
  void normal_(Tensor& t, double mean, double std);
  void uniform_(Tensor& t, double low, double high);
  double uniform();  // one number in [0, 1)
  // Reserves n values of the stream (for kernels that draw their own, like dropout).
  uint64_t advance(uint64_t n) {
    const uint64_t o = offset_;
    offset_ += n;
    return o;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// splitmix64 of (seed, index): 64 well-mixed bits.
uint64_t counter_hash(uint64_t seed, uint64_t index);

}  // namespace trident
