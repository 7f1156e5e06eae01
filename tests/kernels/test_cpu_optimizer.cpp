// AdamW and SGD: three steps against values worked out by hand (torch.optim semantics), and
// a threaded-size vector against the same recurrences evaluated in double.
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/optimizer.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

namespace {

// One parameter starting at 1.0, gradients 1, -2, 0.5, lr 0.1.
constexpr float kGrads[3] = {1.0f, -2.0f, 0.5f};

std::vector<double> run_sgd(float momentum, float dampening, float wd, bool nesterov) {
  float p = 1.0f, g = 0, buf = 0;
  std::vector<double> trajectory;
  for (int step = 0; step < 3; ++step) {
    g = kGrads[step];
    cpu::sgd_update(&p, &g, momentum != 0 ? &buf : nullptr, 1, 0.1f, momentum, dampening, wd,
                    nesterov, step == 0);
    trajectory.push_back(p);
  }
  return trajectory;
}

}  // namespace

TEST_CASE("SGD variants over three steps match hand-computed values", "[kernels][optimizer]") {
  // Plain: p -= 0.1 g.
  require_close(run_sgd(0, 0, 0, false), std::vector<double>{0.9, 1.1, 1.05}, 1e-6, 0, "plain");
  // Weight decay 0.1: g += 0.1 p -> 1.1, -1.911, 0.60811.
  require_close(run_sgd(0, 0, 0.1f, false), std::vector<double>{0.89, 1.0811, 1.020289}, 1e-6, 0,
                "weight decay");
  // Momentum 0.9, dampening 0.1: buf = 1, then 0.9*1 + 0.9*(-2) = -0.9, then -0.81 + 0.45 = -0.36.
  require_close(run_sgd(0.9f, 0.1f, 0, false), std::vector<double>{0.9, 0.99, 1.026}, 1e-6, 0,
                "momentum + dampening");
  // Nesterov, momentum 0.9, weight decay 0.01: g = g' + 0.9 buf.
  require_close(run_sgd(0.9f, 0, 0.01f, true),
                std::vector<double>{0.8081, 1.10475461, 1.095372015241}, 1e-6, 0, "nesterov");
  // Momentum without a buffer is an error.
  float p = 1, g = 1;
  REQUIRE_THROWS_AS(cpu::sgd_update(&p, &g, nullptr, 1, 0.1f, 0.9f, 0, 0, false, true),
                    std::invalid_argument);
}

TEST_CASE("AdamW over three steps matches hand-computed values", "[kernels][optimizer]") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, p0 = 1.
  float p = 1.0f, m = 0.0f, v = 0.0f;
  const double want_p[3] = {0.899000001, 0.9347113534710749, 0.9474457083193505};
  const double want_m[3] = {0.1, -0.11, -0.049};
  const double want_v[3] = {0.001, 0.004999, 0.005244001};
  for (int step = 1; step <= 3; ++step) {
    const float g = kGrads[step - 1];
    cpu::adamw_update(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
    INFO("step " << step);
    REQUIRE(std::abs(p - want_p[step - 1]) <= 1e-6 * want_p[step - 1]);
    REQUIRE(std::abs(m - want_m[step - 1]) <= 1e-6 * std::abs(want_m[step - 1]));
    // 1 - 0.999f is 0.00099998713 in float: v carries that 1.3e-5 relative offset.
    REQUIRE(std::abs(v - want_v[step - 1]) <= 3e-5 * want_v[step - 1]);
  }
  REQUIRE_THROWS_AS(cpu::adamw_update(&p, &kGrads[0], &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.f, 0),
                    std::invalid_argument);
}

TEST_CASE("optimizers on a threaded size follow the double recurrences", "[kernels][optimizer]") {
  const int64_t n = 100003;
  const auto p0 = random_vector<float>(n, 501);
  std::vector<float> p(p0), m(n, 0.f), v(n, 0.f), sp(p0), buf(n, 0.f);
  std::vector<double> pd(p0.begin(), p0.end()), md(n, 0), vd(n, 0), spd(pd), bufd(n, 0);
  const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, mu = 0.9, damp = 0.2;
  for (int step = 1; step <= 3; ++step) {
    const auto g = random_vector<float>(n, 510 + step);
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, float(lr), float(b1), float(b2),
                      float(eps), float(wd), step);
    cpu::sgd_update(sp.data(), g.data(), buf.data(), n, float(lr), float(mu), float(damp),
                    float(wd), true, step == 1);
    for (int64_t i = 0; i < n; ++i) {
      pd[i] *= 1 - lr * wd;
      md[i] = b1 * md[i] + (1 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1 - b2) * double(g[i]) * g[i];
      pd[i] -= lr * (md[i] / (1 - std::pow(b1, step))) /
               (std::sqrt(vd[i] / (1 - std::pow(b2, step))) + eps);
      const double gd = g[i] + wd * spd[i];
      bufd[i] = step == 1 ? gd : mu * bufd[i] + (1 - damp) * gd;
      spd[i] -= lr * (gd + mu * bufd[i]);
    }
  }
  require_close(p, pd, 1e-5, 1e-6, "adamw param");
  require_close(m, md, 1e-5, 1e-7, "adamw m");
  require_close(v, vd, 1e-5, 1e-9, "adamw v");
  require_close(sp, spd, 1e-5, 1e-6, "sgd param");
  require_close(buf, bufd, 1e-5, 1e-6, "sgd buf");
}

TEST_CASE("a grad_scale folded into the update is bitwise a scaling pass, then the update",
          "[kernels][optimizer]") {
  // Clipping folded into the optimizer: the update reads grad * s (f32) where the trainer used
  // to store s * grad first. Sizes around the 2048-element blocks and the threading grain.
  for (const int64_t n : {int64_t{1}, int64_t{2049}, int64_t{100003}}) {
    const auto p0 = random_vector<float>(n, 601);
    const auto m0 = random_vector<float>(n, 602);
    std::vector<float> v0 = random_vector<float>(n, 603);
    for (float& x : v0) x = x * x;
    for (const float s : {0.37f, 1.0f, 1e-3f}) {
      std::vector<float> g = random_vector<float>(n, 604);
      std::vector<float> g_scaled(g);
      for (float& x : g_scaled) x = x * s;
      std::vector<float> pa(p0), ma(m0), va(v0), pb(p0), mb(m0), vb(v0);
      cpu::adamw_update(pa.data(), g_scaled.data(), ma.data(), va.data(), n, 3e-3f, 0.9f, 0.95f,
                        1e-8f, 0.1f, 4);
      cpu::adamw_update(pb.data(), g.data(), mb.data(), vb.data(), n, 3e-3f, 0.9f, 0.95f, 1e-8f,
                        0.1f, 4, s);
      INFO("adamw, n " << n << ", scale " << s);
      REQUIRE(pa == pb);
      REQUIRE(ma == mb);
      REQUIRE(va == vb);
      std::vector<float> sa(p0), ba(m0), sb(p0), bb(m0);
      cpu::sgd_update(sa.data(), g_scaled.data(), ba.data(), n, 0.05f, 0.9f, 0.1f, 0.01f, true,
                      false);
      cpu::sgd_update(sb.data(), g.data(), bb.data(), n, 0.05f, 0.9f, 0.1f, 0.01f, true, false, s);
      INFO("sgd");
      REQUIRE(sa == sb);
      REQUIRE(ba == bb);
    }
  }
}
