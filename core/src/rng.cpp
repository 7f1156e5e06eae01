#include "trident/core/rng.hpp"

#include <cmath>
#include <vector>

namespace trident {

uint64_t counter_hash(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {
// Uniform in (0, 1] from the top 53 bits (never 0, so log() is safe).
double unit(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53;
}

void fill_host(Tensor& t, const std::vector<double>& values) {
  Tensor host = Tensor::from_vector(values, t.shape());
  t.copy_(host);
}
}  // namespace

void Generator::normal_(Tensor& t, double mean, double std) {
  const int64_t n = t.numel();
  std::vector<double> v(static_cast<size_t>(n));
  const uint64_t base = advance(static_cast<uint64_t>(n));
  for (int64_t i = 0; i < n; ++i) {  // Box-Muller on two hashes of the same counter
    const double u1 = unit(counter_hash(seed_, base + i));
    const double u2 = unit(counter_hash(seed_ ^ 0xA5A5A5A5DEADBEEFull, base + i));
    v[static_cast<size_t>(i)] =
        mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  fill_host(t, v);
}

void Generator::uniform_(Tensor& t, double low, double high) {
  const int64_t n = t.numel();
  std::vector<double> v(static_cast<size_t>(n));
  const uint64_t base = advance(static_cast<uint64_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[static_cast<size_t>(i)] = low + (high - low) * (1.0 - unit(counter_hash(seed_, base + i)));
  }
  fill_host(t, v);
}

double Generator::uniform() {
  return 1.0 - unit(counter_hash(seed_, advance(1)));
}

}  // namespace trident
