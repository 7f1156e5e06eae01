// Finite-difference gradient check in f64: compares autograd's gradient of
// L = sum(f(inputs) * R) (R a fixed random tensor) against central differences.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <vector>

#include "trident/core/ops.hpp"
#include "trident/core/rng.hpp"
#include "trident/core/tensor.hpp"

namespace trident::testing {

inline Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::F64) {
  Tensor t = Tensor::empty(shape, dtype);
  Generator gen(seed);
  gen.normal_(t, 0.0, 1.0);
  return t;
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Returns the largest |analytic - numeric| / max(1, |numeric|) over all inputs' elements.
inline double grad_check_error(const Fn& f, std::vector<Tensor> inputs, double h = 1e-6) {
  for (auto& x : inputs) x.requires_grad_(true);
  const Tensor probe = f(inputs);
  const Tensor R = randn(probe.shape(), 4242, probe.dtype());
  auto objective = [&](const std::vector<Tensor>& in) { return ops::sum(ops::mul(f(in), R)); };
  objective(inputs).backward();
  double worst = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    REQUIRE(x.grad().defined());
    const std::vector<double> analytic = x.grad().to_vector<double>();
    double* data = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      NoGradGuard no_grad;
      const double orig = data[i];
      data[i] = orig + h;
      const double up = objective(inputs).item();
      data[i] = orig - h;
      const double down = objective(inputs).item();
      data[i] = orig;
      const double numeric = (up - down) / (2 * h);
      const double err =
          std::abs(analytic[static_cast<size_t>(i)] - numeric) / std::max(1.0, std::abs(numeric));
      worst = std::max(worst, err);
    }
  }
  return worst;
}

}  // namespace trident::testing
