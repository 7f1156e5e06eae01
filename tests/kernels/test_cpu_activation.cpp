// GELU and row softmax: forward against double formulas, backward by central differences,
// softmax stability under a large shift, and threaded sizes.
#include <cmath>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/activation.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::cast_vector;
using trident::kernels::test::check_gradient;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;
using trident::kernels::test::weighted_sum;

namespace {

double gelu_reference(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

std::vector<double> softmax_reference(const std::vector<double>& x, int64_t rows, int64_t cols) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -INFINITY, s = 0;
    for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, x[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) s += std::exp(x[r * cols + c] - mx);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = std::exp(x[r * cols + c] - mx) / s;
  }
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("gelu forward matches the tanh formula", "[kernels][activation]", float,
                   double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 2e-6 : 1e-14;
  for (int64_t n : {61, 100003}) {
    const auto x = random_vector<double>(n, 121, -6, 6);
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = gelu_reference(x[i]);
    const auto xt = cast_vector<T>(x);
    std::vector<T> y(n);
    cpu::gelu_forward<T>(y.data(), xt.data(), n);
    require_close(y, want, rtol, rtol, "gelu n=" + std::to_string(n));
  }
  // Known values (torch.nn.functional.gelu(approximate='tanh')).
  const T x[3] = {T(-1), T(0.5), T(2)};
  T y[3];
  cpu::gelu_forward<T>(y, x, 3);
  const double known[3] = {-0.15880800939172324, 0.34571400982514394, 1.9545976940871754};
  require_close(y, known, 3, 1e-6, 1e-7, "gelu known values");
}

TEST_CASE("gelu backward matches central differences", "[kernels][activation]") {
  const int64_t n = 61;
  auto x = random_vector<double>(n, 131, -4, 4);
  const auto w = random_vector<double>(n, 132);
  std::vector<double> y(n), dx(n);
  const auto loss = [&] {
    cpu::gelu_forward<double>(y.data(), x.data(), n);
    return weighted_sum(y, w);
  };
  cpu::gelu_backward<double>(dx.data(), x.data(), w.data(), n);
  check_gradient(x, dx, loss, "gelu dinp");
}

TEST_CASE("gelu backward in float on a threaded size", "[kernels][activation]") {
  const int64_t n = 100003;
  const auto x = random_vector<double>(n, 141, -5, 5);
  const auto dy = random_vector<double>(n, 142);
  std::vector<double> want(n);
  cpu::gelu_backward<double>(want.data(), x.data(), dy.data(), n);  // checked above by FD
  const auto xf = cast_vector<float>(x), dyf = cast_vector<float>(dy);
  std::vector<float> dx(n);
  cpu::gelu_backward<float>(dx.data(), xf.data(), dyf.data(), n);
  require_close(dx, want, 1e-5, 1e-6, "gelu_backward float");
}

TEMPLATE_TEST_CASE("softmax forward is normalised, stable and matches the reference",
                   "[kernels][activation]", float, double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 1e-6 : 1e-14;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{5, 13}, {301, 131}}) {
    const auto x = random_vector<double>(rows * cols, 151, -4, 4);
    const auto want = softmax_reference(x, rows, cols);
    auto xt = cast_vector<T>(x);
    std::vector<T> y(rows * cols);
    cpu::softmax_forward<T>(y.data(), xt.data(), rows, cols);
    require_close(y, want, rtol, 1e-7, "softmax");
    // Shifting a row by a large constant changes nothing (max subtraction).
    for (auto& v : xt) v += T(1000);
    std::vector<T> shifted(rows * cols);
    cpu::softmax_forward<T>(shifted.data(), xt.data(), rows, cols);
    require_close(shifted, want, 1e-4, 1e-7, "softmax shifted by 1000");
  }
}

TEST_CASE("softmax backward matches central differences", "[kernels][activation]") {
  const int64_t rows = 5, cols = 13;
  auto x = random_vector<double>(rows * cols, 161, -3, 3);
  const auto w = random_vector<double>(rows * cols, 162);
  std::vector<double> y(rows * cols), dx(rows * cols);
  const auto loss = [&] {
    cpu::softmax_forward<double>(y.data(), x.data(), rows, cols);
    return weighted_sum(y, w);
  };
  loss();
  cpu::softmax_backward<double>(dx.data(), y.data(), w.data(), rows, cols);
  check_gradient(x, dx, loss, "softmax dinp");

  // Threaded size, float against double.
  const int64_t R = 301, C = 131;
  const auto xb = random_vector<double>(R * C, 163, -3, 3), wb = random_vector<double>(R * C, 164);
  std::vector<double> yb(R * C), want(R * C);
  cpu::softmax_forward<double>(yb.data(), xb.data(), R, C);
  cpu::softmax_backward<double>(want.data(), yb.data(), wb.data(), R, C);
  const auto yf = cast_vector<float>(yb), wf = cast_vector<float>(wb);
  std::vector<float> dxf(R * C);
  cpu::softmax_backward<float>(dxf.data(), yf.data(), wf.data(), R, C);
  require_close(dxf, want, 1e-5, 1e-7, "softmax_backward float");
}
