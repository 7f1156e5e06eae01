// Layer norm: forward against a double reference, backward by central differences in double,
// and both at a size that runs threaded against a naive double implementation of the formula.
#include <limits>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/layernorm.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::cast_vector;
using trident::kernels::test::check_gradient;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;
using trident::kernels::test::weighted_sum;

namespace {

struct LayerNormReference {
  std::vector<double> out, mean, rstd, dinp, dweight, dbias;
};

LayerNormReference reference_layernorm(const std::vector<double>& x, const std::vector<double>& w,
                                       const std::vector<double>& b, const std::vector<double>& dy,
                                       int64_t N, int64_t C, double eps) {
  LayerNormReference r{std::vector<double>(N * C),  std::vector<double>(N),
                       std::vector<double>(N),      std::vector<double>(N * C),
                       std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (int64_t n = 0; n < N; ++n) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) m += x[n * C + c] / C;
    for (int64_t c = 0; c < C; ++c) v += (x[n * C + c] - m) * (x[n * C + c] - m) / C;
    const double rs = 1 / std::sqrt(v + eps);
    r.mean[n] = m;
    r.rstd[n] = rs;
    double g_mean = 0, gx_mean = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (x[n * C + c] - m) * rs;
      r.out[n * C + c] = xh * w[c] + b[c];
      g_mean += dy[n * C + c] * w[c] / C;
      gx_mean += dy[n * C + c] * w[c] * xh / C;
      r.dweight[c] += dy[n * C + c] * xh;
      r.dbias[c] += dy[n * C + c];
    }
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (x[n * C + c] - m) * rs;
      r.dinp[n * C + c] = rs * (dy[n * C + c] * w[c] - g_mean - xh * gx_mean);
    }
  }
  return r;
}

}  // namespace

TEST_CASE("layernorm backward matches central differences", "[kernels][layernorm]") {
  const int64_t N = 2 * 5, C = 12;
  const double eps = 1e-5;
  auto x = random_vector<double>(N * C, 101, -2, 2);
  auto w = random_vector<double>(C, 102, 0.5, 1.5);
  auto b = random_vector<double>(C, 103);
  const auto dy = random_vector<double>(N * C, 104);
  std::vector<double> out(N * C), mean(N), rstd(N);
  const auto loss = [&] {
    cpu::layernorm_forward<double>(out.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                   b.data(), N, C, eps);
    return weighted_sum(out, dy);
  };
  loss();
  const auto ref = reference_layernorm(x, w, b, dy, N, C, eps);
  require_close(out, ref.out, 1e-12, 1e-12, "out");
  require_close(mean, ref.mean, 1e-12, 1e-12, "mean");
  require_close(rstd, ref.rstd, 1e-12, 1e-12, "rstd");

  std::vector<double> dx(N * C), dw(C, 9.0), db(C, 9.0);  // dw/db are overwritten
  cpu::layernorm_backward<double>(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                                  mean.data(), rstd.data(), N, C);
  check_gradient(x, dx, loss, "dinp");
  check_gradient(w, dw, loss, "dweight");
  check_gradient(b, db, loss, "dbias");
}

TEMPLATE_TEST_CASE("layernorm on a threaded size matches the double reference",
                   "[kernels][layernorm]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-11;
  const int64_t N = 301, C = 130;
  const auto x = random_vector<double>(N * C, 111, -3, 3);
  const auto w = random_vector<double>(C, 112, 0.5, 1.5);
  const auto b = random_vector<double>(C, 113);
  const auto dy = random_vector<double>(N * C, 114);
  const auto ref = reference_layernorm(x, w, b, dy, N, C, 1e-5);
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), bt = cast_vector<T>(b),
             dyt = cast_vector<T>(dy);
  std::vector<T> out(N * C), mean(N), rstd(N), dx(N * C), dw(C), db(C);
  cpu::layernorm_forward<T>(out.data(), mean.data(), rstd.data(), xt.data(), wt.data(), bt.data(),
                            N, C, T(1e-5));
  require_close(out, ref.out, tol, tol, "out");
  require_close(mean, ref.mean, tol, tol, "mean");
  require_close(rstd, ref.rstd, tol, tol, "rstd");
  cpu::layernorm_backward<T>(dx.data(), dw.data(), db.data(), dyt.data(), xt.data(), wt.data(),
                             mean.data(), rstd.data(), N, C);
  require_close(dx, ref.dinp, tol, tol, "dinp");
  require_close(dw, ref.dweight, tol, 10 * tol, "dweight");
  require_close(db, ref.dbias, tol, 10 * tol, "dbias");
}
