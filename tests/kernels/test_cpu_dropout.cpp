// Counter-based dropout: the documented splitmix64 stream, drop rate within 3 sigma, masks
// independent of the thread count and consistent with the offset, and the p = 0 / p = 1 edges.
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/dropout.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::OmpThreads;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

namespace {

// Independent implementation of the stream documented in dropout.hpp.
uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ULL;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
float documented_uniform(uint64_t seed, uint64_t index) {
  const uint64_t h = mix(mix(seed) + (index + 1) * 0x9E3779B97F4A7C15ULL);
  return static_cast<float>(h >> 40) / 16777216.0f;
}

}  // namespace

TEST_CASE("counter_uniform follows the documented stream and is uniform", "[kernels][dropout]") {
  for (uint64_t seed : {0ULL, 1ULL, 1234567ULL, ~0ULL}) {
    for (uint64_t index : {0ULL, 1ULL, 99ULL, (1ULL << 40) + 3}) {
      REQUIRE(cpu::counter_uniform(seed, index) == documented_uniform(seed, index));
    }
  }
  const int n = 200000;
  double sum = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = cpu::counter_uniform(42, i);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
  }
  REQUIRE(lo >= 0.0f);
  REQUIRE(lo < 1e-4f);
  REQUIRE(hi < 1.0f);
  REQUIRE(hi > 1.0f - 1e-4f);
  // Mean of U[0,1): 1/2 with standard error sqrt(1/12/n).
  REQUIRE(std::abs(sum / n - 0.5) < 3 * std::sqrt(1.0 / 12 / n));
}

TEMPLATE_TEST_CASE("dropout drops a fraction p and scales the rest", "[kernels][dropout]", float,
                   double) {
  using T = TestType;
  const int64_t n = 200003;
  const auto inp = random_vector<T>(n, 401);
  for (float p : {0.1f, 0.5f, 0.9f}) {
    std::vector<T> out(n), mask(n);
    cpu::dropout_forward<T>(out.data(), mask.data(), inp.data(), n, p, 7, 0);
    const T keep = static_cast<T>(1.0 / (1.0 - static_cast<double>(p)));
    int64_t dropped = 0, bad_value = 0, bad_draw = 0;
    std::vector<T> want(n);
    for (int64_t i = 0; i < n; ++i) {
      bad_value += mask[i] != T(0) && mask[i] != keep;
      // Each element is decided by its own counter draw.
      bad_draw += (mask[i] == T(0)) != (cpu::counter_uniform(7, i) < p);
      dropped += mask[i] == T(0);
      want[i] = inp[i] * mask[i];
    }
    REQUIRE(bad_value == 0);
    REQUIRE(bad_draw == 0);
    require_close(out, want, 0, 0, "out = inp * mask");
    const double sigma = std::sqrt(p * (1.0 - p) / n);
    INFO("p " << p << " dropped " << dropped);
    REQUIRE(std::abs(static_cast<double>(dropped) / n - p) < 3 * sigma);

    const auto dout = random_vector<T>(n, 402);
    std::vector<T> dinp(n), dwant(n);
    for (int64_t i = 0; i < n; ++i) dwant[i] = dout[i] * mask[i];
    cpu::dropout_backward<T>(dinp.data(), dout.data(), mask.data(), n);
    require_close(dinp, dwant, 0, 0, "dinp = dout * mask");
  }
}

TEST_CASE("dropout masks do not depend on the thread count and follow the offset",
          "[kernels][dropout]") {
  const int64_t n = 300001, shift = 1000;
  const auto inp = random_vector<float>(n + shift, 411);
  std::vector<float> out1(n), mask1(n), out2(n), mask2(n);
  {
    OmpThreads threads(1);
    cpu::dropout_forward<float>(out1.data(), mask1.data(), inp.data(), n, 0.3f, 99, 5);
  }
  {
    OmpThreads threads(2);
    cpu::dropout_forward<float>(out2.data(), mask2.data(), inp.data(), n, 0.3f, 99, 5);
  }
  REQUIRE(mask1 == mask2);
  REQUIRE(out1 == out2);

  // Elements [shift, n + shift) of a call at offset 0 == a call at offset `shift`.
  std::vector<float> long_out(n + shift), long_mask(n + shift), tail_out(n), tail_mask(n);
  cpu::dropout_forward<float>(long_out.data(), long_mask.data(), inp.data(), n + shift, 0.3f, 99,
                              0);
  cpu::dropout_forward<float>(tail_out.data(), tail_mask.data(), inp.data() + shift, n, 0.3f, 99,
                              shift);
  REQUIRE(std::equal(tail_mask.begin(), tail_mask.end(), long_mask.begin() + shift));

  // Another seed gives another mask (agreement ~ p^2 + (1-p)^2 = 0.58, not 1).
  std::vector<float> other(n), other_mask(n);
  cpu::dropout_forward<float>(other.data(), other_mask.data(), inp.data(), n, 0.3f, 100, 5);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += other_mask[i] == mask1[i];
  REQUIRE(std::abs(static_cast<double>(same) / n - 0.58) < 0.01);
}

TEST_CASE("dropout with p = 0 copies, p = 1 zeroes, other p are rejected", "[kernels][dropout]") {
  const int64_t n = 1001;
  const auto inp = random_vector<float>(n, 421);
  std::vector<float> out(n), mask(n);
  cpu::dropout_forward<float>(out.data(), mask.data(), inp.data(), n, 0.0f, 1, 0);
  REQUIRE(out == inp);
  REQUIRE(mask == std::vector<float>(n, 1.0f));
  cpu::dropout_forward<float>(out.data(), mask.data(), inp.data(), n, 1.0f, 1, 0);
  REQUIRE(mask == std::vector<float>(n, 0.0f));
  REQUIRE(out == std::vector<float>(n, 0.0f));
  for (float p : {-0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    REQUIRE_THROWS_AS(cpu::dropout_forward<float>(out.data(), mask.data(), inp.data(), n, p, 1, 0),
                      std::invalid_argument);
  }
}
