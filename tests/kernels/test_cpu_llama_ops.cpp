// The Llama CPU kernels (rms_norm, rope, swiglu, gqa_pack) at sizes above the serial grain, so
// that their threaded paths run (the kernel binary also runs at 2 and 3 threads and at the
// lower CPU levels): each against a naive double implementation of its formula. Gradients by
// finite differences live in tests/core/test_llama_ops.cpp.
#include <cmath>
#include <type_traits>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/gqa_pack.hpp"
#include "trident/kernels/cpu/rms_norm.hpp"
#include "trident/kernels/cpu/rope.hpp"
#include "trident/kernels/cpu/swiglu.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::cast_vector;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

TEMPLATE_TEST_CASE("rms_norm on a threaded size matches the double reference", "[kernels][llama]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 2e-5 : 1e-11;
  const int64_t N = 301, C = 130;
  const double eps = 1e-5;
  const auto x = random_vector<double>(N * C, 211, -3, 3);
  const auto w = random_vector<double>(C, 212, 0.5, 1.5);
  const auto dy = random_vector<double>(N * C, 213);
  std::vector<double> out(N * C), rstd(N), dinp(N * C), dweight(C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0, a = 0;
    for (int64_t c = 0; c < C; ++c) ss += x[n * C + c] * x[n * C + c];
    const double rs = 1 / std::sqrt(ss / C + eps);
    rstd[n] = rs;
    for (int64_t c = 0; c < C; ++c) {
      out[n * C + c] = x[n * C + c] * rs * w[c];
      a += dy[n * C + c] * w[c] * x[n * C + c] * rs / C;
      dweight[c] += dy[n * C + c] * x[n * C + c] * rs;
    }
    for (int64_t c = 0; c < C; ++c)
      dinp[n * C + c] = rs * (dy[n * C + c] * w[c] - x[n * C + c] * rs * a);
  }
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), dyt = cast_vector<T>(dy);
  std::vector<T> got(N * C), got_rstd(N), got_dx(N * C), got_dw(C);
  cpu::rms_norm_forward<T>(got.data(), got_rstd.data(), xt.data(), wt.data(), N, C, T(eps));
  require_close(got, out, tol, tol, "out");
  require_close(got_rstd, rstd, tol, tol, "rstd");
  cpu::rms_norm_backward<T>(got_dx.data(), got_dw.data(), dyt.data(), xt.data(), wt.data(),
                            got_rstd.data(), N, C);
  require_close(got_dx, dinp, tol, tol, "dinp");
  require_close(got_dw, dweight, tol, 10 * tol, "dweight");
}

TEMPLATE_TEST_CASE("rope on a threaded size matches the double rotation, in place too",
                   "[kernels][llama]", float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-6 : 1e-14;
  const int64_t B = 3, T_ = 50, NH = 4, D = 64, half = D / 2, offset = 17;
  const double theta = 500000.0;
  const auto x = random_vector<double>(B * T_ * NH * D, 214, -2, 2);
  std::vector<double> fwd(x.size()), inv(x.size());
  for (int64_t r = 0; r < B * T_; ++r)
    for (int64_t i = 0; i < half; ++i) {
      // Hugging Face's float32 angle: inv_freq = 1 / theta^(2i/D), angle = position * inv_freq.
      const float e = static_cast<float>(2 * i) / static_cast<float>(D);
      const float inv_freq = 1.0f / std::pow(static_cast<float>(theta), e);
      const double a = static_cast<float>(offset + r % T_) * inv_freq;
      for (int64_t h = 0; h < NH; ++h) {
        const size_t o = static_cast<size_t>(r * NH * D + h * D + i);
        const double x1 = x[o], x2 = x[o + half];
        fwd[o] = x1 * std::cos(a) - x2 * std::sin(a);
        fwd[o + half] = x2 * std::cos(a) + x1 * std::sin(a);
        inv[o] = x1 * std::cos(a) + x2 * std::sin(a);
        inv[o + half] = x2 * std::cos(a) - x1 * std::sin(a);
      }
    }
  auto xt = cast_vector<T>(x);
  std::vector<T> got(x.size());
  cpu::rope_forward<T>(got.data(), xt.data(), B, T_, NH, D, theta, offset, false);
  require_close(got, fwd, tol, tol, "forward");
  cpu::rope_forward<T>(got.data(), xt.data(), B, T_, NH, D, theta, offset, true);
  require_close(got, inv, tol, tol, "inverse");
  cpu::rope_forward<T>(xt.data(), xt.data(), B, T_, NH, D, theta, offset, false);
  require_close(xt, fwd, tol, tol, "forward in place");
}

TEMPLATE_TEST_CASE("swiglu on a threaded size matches the double reference", "[kernels][llama]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same<T, float>::value ? 1e-6 : 1e-14;
  const int64_t n = 40000;
  const auto g = random_vector<double>(n, 215, -12, 12);
  const auto u = random_vector<double>(n, 216);
  const auto dy = random_vector<double>(n, 217);
  std::vector<double> out(n), dg(n), du(n);
  for (int64_t i = 0; i < n; ++i) {
    const double s = 1 / (1 + std::exp(-g[i]));
    out[i] = g[i] * s * u[i];
    dg[i] = dy[i] * u[i] * (s + g[i] * s * (1 - s));
    du[i] = dy[i] * g[i] * s;
  }
  const auto gt = cast_vector<T>(g), ut = cast_vector<T>(u), dyt = cast_vector<T>(dy);
  std::vector<T> got(n), got_dg(n), got_du(n);
  cpu::swiglu_forward<T>(got.data(), gt.data(), ut.data(), n);
  require_close(got, out, tol, tol, "out");
  cpu::swiglu_backward<T>(got_dg.data(), got_du.data(), gt.data(), ut.data(), dyt.data(), n);
  require_close(got_dg, dg, tol, tol, "dgate");
  require_close(got_du, du, tol, tol, "dup");
}

TEMPLATE_TEST_CASE("gqa_pack on a threaded size places and sums the repeated kv heads",
                   "[kernels][llama]", float, double) {
  using T = TestType;
  const int64_t N = 200, H = 8, Hkv = 2, D = 16, C = H * D, Ckv = Hkv * D, group = H / Hkv;
  const auto q = cast_vector<T>(random_vector<double>(N * C, 218));
  const auto k = cast_vector<T>(random_vector<double>(N * Ckv, 219));
  const auto v = cast_vector<T>(random_vector<double>(N * Ckv, 220));
  const auto g = cast_vector<T>(random_vector<double>(N * 3 * C, 221));
  std::vector<double> qkv(N * 3 * C), dq(N * C), dk(N * Ckv, 0.0), dv(N * Ckv, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t src = n * Ckv + (h / group) * D + d, row = n * 3 * C + h * D + d;
        qkv[row] = q[n * C + h * D + d];
        qkv[row + C] = k[src];
        qkv[row + 2 * C] = v[src];
        dq[n * C + h * D + d] = g[row];
        dk[src] += g[row + C];
        dv[src] += g[row + 2 * C];
      }
  std::vector<T> got(N * 3 * C), got_dq(N * C), got_dk(N * Ckv), got_dv(N * Ckv);
  cpu::gqa_pack_forward<T>(got.data(), q.data(), k.data(), v.data(), N, H, Hkv, D);
  require_close(got, qkv, 0, 0, "qkv");
  cpu::gqa_pack_backward<T>(got_dq.data(), got_dk.data(), got_dv.data(), g.data(), N, H, Hkv, D);
  require_close(got_dq, dq, 0, 0, "dq");
  const double tol = std::is_same<T, float>::value ? 1e-6 : 1e-15;
  require_close(got_dk, dk, tol, tol, "dk");
  require_close(got_dv, dv, tol, tol, "dv");
}
