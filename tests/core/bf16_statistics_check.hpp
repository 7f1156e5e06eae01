// Per-element checks of the two bf16 ops that save per-row statistics for their backward, on
// any device: layer norm (mean, rstd) and cross entropy (log-sum-exp). The CPU runs them in
// tests/core/test_bf16.cpp, the GPU in tests/gpu/test_bf16_statistics.cpp. Inputs sit near 10,
// where bf16's spacing is 0.0625: a statistic rounded to bf16 is off by up to 0.03, which moves
// the normalised values layer norm's backward rebuilds by up to 3% of a standard deviation and
// the probabilities exp(x - lse) by up to 3%. With f32 statistics each bf16 output is f32 math
// on the (exact) bf16 inputs rounded once, so every element must be within 2^-7 of an f64
// reference computed from the same bf16 values (one rounding to bf16's 8 significant bits is at
// most 2^-8; the factor 2 covers the f32 arithmetic), plus a floor of 1e-4 of the tensor's
// largest entry for f32 cancellation; f32 outputs within 1e-5.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::bf16_statistics {

constexpr double kBf16Rtol = 1.0 / 128;  // 2^-7: one bf16 rounding (2^-8) with a factor 2

// `n` values shift + scale * N(0, 1), rounded to bf16 and returned as the doubles they are.
inline std::vector<double> bf16_normal(size_t n, std::mt19937_64& rng, double scale, double shift) {
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(shift + scale * dist(rng));
  return Tensor::from_vector(v, {static_cast<int64_t>(n)}).to(DType::BF16).to_vector<double>();
}

inline Tensor on(const std::vector<double>& v, const Shape& shape, DType t, Device dev) {
  return Tensor::from_vector(v, shape).to(t).to(dev);
}

// Requires |got - want| <= rtol |want| + atol_rel * max|want| for every element and prints the
// worst element's error in units of that bound (<= 1 passes).
inline void require_per_element(const std::vector<double>& got, const std::vector<double>& want,
                                double rtol, double atol_rel, const std::string& what) {
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  const double atol = atol_rel * scale;
  size_t worst = 0;
  double excess = -1, worst_rel = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    double e = d == 0 ? 0 : d / (rtol * std::abs(want[i]) + atol);
    if (std::isnan(e)) e = 1e300;
    if (e > excess) excess = e, worst = i;
    if (std::abs(want[i]) > 0.1 * scale) worst_rel = std::max(worst_rel, d / std::abs(want[i]));
  }
  std::printf(
      "%s: worst element %zu: got %.7g want %.7g, %.3g x the bound; largest relative "
      "error among entries above 10%% of the largest %.3g\n",
      what.c_str(), worst, got[worst], want[worst], excess, worst_rel);
  INFO(what << ": worst element " << worst << " got " << got[worst] << " want " << want[worst]
            << " (" << excess << " x the bound rtol " << rtol << " + " << atol << ")");
  CHECK(excess <= 1.0);
}

// LayerNorm of bf16 rows 10 + N(0, 1) on `dev`: normalised outputs and the gradients of x,
// weight and bias, per element against f64.
inline void check_layer_norm(Device dev) {
  const int64_t N = 64, C = 96;
  const double eps = 1e-5;
  std::mt19937_64 rng(2024);
  const auto x = bf16_normal(N * C, rng, 1.0, 10.0), w = bf16_normal(C, rng, 0.5, 1.0),
             b = bf16_normal(C, rng, 0.5, 0.0), dy = bf16_normal(N * C, rng, 1.0, 0.0);
  std::vector<double> out(N * C), dx(N * C), dw(C, 0.0), db(C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const double* xr = &x[n * C];
    double m = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) m += xr[c] / C;
    for (int64_t c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m) / C;
    const double rs = 1 / std::sqrt(v + eps);
    double g_mean = 0, gx_mean = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (xr[c] - m) * rs, g = dy[n * C + c];
      out[n * C + c] = xh * w[c] + b[c];
      g_mean += g * w[c] / C;
      gx_mean += g * w[c] * xh / C;
      dw[c] += g * xh;
      db[c] += g;
    }
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (xr[c] - m) * rs;
      dx[n * C + c] = rs * (dy[n * C + c] * w[c] - g_mean - xh * gx_mean);
    }
  }
  Tensor xt = on(x, {N, C}, DType::BF16, dev).requires_grad_();
  Tensor wt = on(w, {C}, DType::BF16, dev).requires_grad_();
  Tensor bt = on(b, {C}, DType::BF16, dev).requires_grad_();
  const Tensor y = ops::layer_norm(xt, wt, bt, eps);
  REQUIRE(y.dtype() == DType::BF16);
  y.backward(on(dy, {N, C}, DType::BF16, dev));
  const std::string d = dev.str();
  require_per_element(y.to_vector<double>(), out, kBf16Rtol, 1e-4, d + " bf16 layer_norm out");
  require_per_element(xt.grad().to_vector<double>(), dx, kBf16Rtol, 1e-4,
                      d + " bf16 layer_norm dx");
  require_per_element(wt.grad().to_vector<double>(), dw, kBf16Rtol, 1e-4,
                      d + " bf16 layer_norm dweight");
  require_per_element(bt.grad().to_vector<double>(), db, kBf16Rtol, 1e-4,
                      d + " bf16 layer_norm dbias");
}

struct CrossEntropyCase {
  int64_t N = 32, V = 300;
  std::vector<double> logits;
  std::vector<int32_t> targets;
  std::vector<double> lse, losses;  // f64 reference
  // Softmax minus one-hot per element (0 on ignored rows): dlogits for dloss = 1.
  std::vector<double> p_minus_onehot;
};

// bf16 logits 10 + 2 N(0, 1); row 5 ignored.
inline CrossEntropyCase cross_entropy_case() {
  CrossEntropyCase c;
  std::mt19937_64 rng(77);
  c.logits = bf16_normal(c.N * c.V, rng, 2.0, 10.0);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.V) - 1);
  c.targets.resize(c.N);
  for (auto& t : c.targets) t = pick(rng);
  c.targets[5] = -1;
  c.lse.assign(c.N, 0.0);
  c.losses.assign(c.N, 0.0);
  c.p_minus_onehot.assign(c.N * c.V, 0.0);
  for (int64_t i = 0; i < c.N; ++i) {
    const double* x = &c.logits[i * c.V];
    const double mx = *std::max_element(x, x + c.V);
    double s = 0;
    for (int64_t j = 0; j < c.V; ++j) s += std::exp(x[j] - mx);
    c.lse[i] = mx + std::log(s);
    const int32_t t = c.targets[i];
    if (t < 0) continue;
    c.losses[i] = c.lse[i] - x[t];
    for (int64_t j = 0; j < c.V; ++j) {
      c.p_minus_onehot[i * c.V + j] = std::exp(x[j] - c.lse[i]) - (j == t ? 1.0 : 0.0);
    }
  }
  return c;
}

// The backend's bf16 cross entropy on `dev`: lse and losses (f32) within 1e-5, and dlogits
// (bf16) for dlosses of 0.75 per element within 2^-7.
inline void check_cross_entropy_backend(Device dev) {
  const CrossEntropyCase c = cross_entropy_case();
  const int64_t N = c.N, V = c.V;
  const DType st = stats_dtype(DType::BF16);
  const Tensor logits = on(c.logits, {N, V}, DType::BF16, dev);
  const Tensor targets = Tensor::from_vector(c.targets, {N}).to(dev);
  Tensor losses = Tensor::empty({N}, st, dev), lse = Tensor::empty({N}, st, dev);
  const Tensor dl = Tensor::full({N}, 0.75, st, dev);
  Tensor dlogits = Tensor::empty({N, V}, DType::BF16, dev);
  Backend& be = backend_for(dev);
  be.cross_entropy_forward(DType::BF16, losses.raw_data(), lse.raw_data(), logits.raw_data(),
                           targets.data<int32_t>(), N, V);
  be.cross_entropy_backward(DType::BF16, dlogits.raw_data(), logits.raw_data(), lse.raw_data(),
                            targets.data<int32_t>(), dl.raw_data(), N, V, 0);
  std::vector<double> want_dx(c.p_minus_onehot);
  for (double& v : want_dx) v *= 0.75;
  const std::string d = dev.str();
  require_per_element(lse.to_vector<double>(), c.lse, 1e-5, 0, d + " bf16 cross entropy lse");
  require_per_element(losses.to_vector<double>(), c.losses, 1e-5, 1e-6,
                      d + " bf16 cross entropy losses");
  require_per_element(dlogits.to_vector<double>(), want_dx, kBf16Rtol, 1e-6,
                      d + " bf16 cross entropy dlogits");
}

// ops::cross_entropy of bf16 logits on `dev`: the mean loss (f32) and its gradient (bf16).
inline void check_cross_entropy_op(Device dev) {
  const CrossEntropyCase c = cross_entropy_case();
  const int64_t N = c.N, V = c.V;
  Tensor logits = on(c.logits, {N, V}, DType::BF16, dev).requires_grad_();
  const Tensor loss = ops::cross_entropy(logits, Tensor::from_vector(c.targets, {N}).to(dev));
  REQUIRE(loss.dtype() == DType::F32);
  double total = 0;
  for (double l : c.losses) total += l;
  const double valid = static_cast<double>(N - 1);
  CHECK(loss.item() == Approx(total / valid).epsilon(1e-6));
  loss.backward();
  REQUIRE(logits.grad().dtype() == DType::BF16);
  std::vector<double> want(c.p_minus_onehot);
  for (double& v : want) v /= valid;
  require_per_element(logits.grad().to_vector<double>(), want, kBf16Rtol, 1e-6,
                      dev.str() + " bf16 ops::cross_entropy dlogits");
}

}  // namespace trident::bf16_statistics
