// Per-element closeness of two tensors' values, as numpy.allclose: `got` agrees with `want`
// when |got_i - want_i| <= atol + rtol |want_i| for EVERY element i (NaN never agrees). A
// per-tensor max|diff| / max|want| lets a wrong small entry hide behind the tensor's largest one;
// this does not. One helper for trident-compare_runs (the multi-rank equivalence tests) and the
// in-process equivalence tests (data-parallel, pipeline). Header-only, standard library only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace trident::tools {

struct Tolerance {
  double rtol = 1e-5;
  double atol = 0;
};

struct CloseResult {
  size_t size = 0;         // elements compared (0 and failures 1 when the sizes differ)
  size_t failures = 0;     // elements outside atol + rtol |want|
  size_t worst = 0;        // the element with the largest |diff| / (atol + rtol |want|)
  double worst_ratio = 0;  // that ratio: <= 1 when every element agrees
  double worst_got = 0, worst_want = 0;
  double max_abs_diff = 0;  // largest |got - want| over the tensor
  double atol_needed = 0;   // smallest atol that would pass at this rtol (for measuring)
  bool ok() const { return failures == 0; }
};

template <class A, class B>
CloseResult all_close(const std::vector<A>& got, const std::vector<B>& want, Tolerance tol) {
  CloseResult r;
  if (got.size() != want.size()) {
    r.failures = 1;
    r.worst_ratio = std::numeric_limits<double>::infinity();
    return r;
  }
  r.size = want.size();
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    const double diff = std::fabs(g - w);
    const double bound = tol.atol + tol.rtol * std::fabs(w);
    // NaN compares false: !(diff <= bound) counts it as a failure.
    const bool agree = diff <= bound;
    double ratio;
    if (!agree) {
      ++r.failures;
      ratio =
          bound > 0 && std::isfinite(diff) ? diff / bound : std::numeric_limits<double>::infinity();
    } else {
      ratio = bound > 0 ? diff / bound : 0;
    }
    if (i == 0 || ratio > r.worst_ratio) {
      r.worst_ratio = ratio;
      r.worst = i;
      r.worst_got = g;
      r.worst_want = w;
    }
    r.max_abs_diff = std::max(r.max_abs_diff, std::isnan(diff) ? HUGE_VAL : diff);
    r.atol_needed =
        std::max(r.atol_needed, std::isnan(diff) ? HUGE_VAL : diff - tol.rtol * std::fabs(w));
  }
  return r;
}

// "3 of 1024 elements outside 1e-06 + 1e-05 |want|; worst [17]: 0.1234 vs 0.1236 (4.2x the
// bound); max |diff| 2.0e-04"
inline std::string describe(const CloseResult& r, Tolerance tol) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%zu of %zu elements outside %.1e + %.1e |want|; worst [%zu]: %.9g vs %.9g "
                "(%.3g x the bound); max |diff| %.2e",
                r.failures, r.size, tol.atol, tol.rtol, r.worst, r.worst_got, r.worst_want,
                r.worst_ratio, r.max_abs_diff);
  return buf;
}

}  // namespace trident::tools
