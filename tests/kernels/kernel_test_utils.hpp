// Helpers shared by the CPU kernel tests: seeded random inputs, element-wise comparison that
// reports the worst element, central-difference gradient checks, and an OpenMP thread-count
// guard.
#pragma once
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace trident::kernels::test {

template <typename T>
std::vector<T> random_vector(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

template <typename To, typename From>
std::vector<To> cast_vector(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// Requires |got - want| <= atol + rtol * |want| for every element; reports the worst one.
template <typename A, typename B>
void require_close(const A* got, const B* want, size_t n, double rtol, double atol,
                   const std::string& what) {
  size_t worst = 0;
  double worst_excess = -1.0, worst_diff = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    const double diff = std::abs(g - w);
    double excess = diff == 0.0 ? 0.0 : diff / (atol + rtol * std::abs(w));
    if (std::isnan(excess)) excess = 1e300;  // NaN or inf where a finite value was expected
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
      worst_diff = diff;
    }
  }
  if (n == 0) return;
  INFO(what << ": worst element " << worst << " got " << static_cast<double>(got[worst]) << " want "
            << static_cast<double>(want[worst]) << " |diff| " << worst_diff << " (rtol " << rtol
            << ", atol " << atol << ")");
  REQUIRE(worst_excess <= 1.0);
}

template <typename A, typename B>
void require_close(const std::vector<A>& got, const std::vector<B>& want, double rtol, double atol,
                   const std::string& what) {
  REQUIRE(got.size() == want.size());
  require_close(got.data(), want.data(), got.size(), rtol, atol, what);
}

// Central differences (eps 1e-6) of loss() with respect to every element of x, compared with
// the analytic gradient: |num - ana| <= 1e-6 * max(|num|, |ana|) + 1e-8. The small absolute
// floor covers the round-off of the difference quotient (~1e-16 * |loss| / eps).
inline void check_gradient(std::vector<double>& x, const std::vector<double>& analytic,
                           const std::function<double()>& loss, const std::string& what) {
  REQUIRE(x.size() == analytic.size());
  constexpr double eps = 1e-6, rtol = 1e-6, atol = 1e-8;
  std::vector<double> numeric(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double lp = loss();
    x[i] = saved - eps;
    const double lm = loss();
    x[i] = saved;
    numeric[i] = (lp - lm) / (2 * eps);
  }
  size_t worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double tol = atol + rtol * std::max(std::abs(numeric[i]), std::abs(analytic[i]));
    double excess = std::abs(numeric[i] - analytic[i]) / tol;
    if (std::isnan(excess)) excess = 1e300;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  INFO(what << ": worst element " << worst << " analytic " << analytic[worst] << " numeric "
            << numeric[worst]);
  REQUIRE(worst_excess <= 1.0);
}

// Sum of out * w: a scalar loss whose gradient with respect to out is w.
inline double weighted_sum(const std::vector<double>& out, const std::vector<double>& w) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * w[i];
  return s;
}

// Sets the OpenMP thread count for a scope and restores it after.
class OmpThreads {
 public:
  explicit OmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved_); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;

 private:
  int saved_;
};

}  // namespace trident::kernels::test
