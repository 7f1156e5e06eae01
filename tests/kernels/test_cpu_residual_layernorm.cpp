// Fused residual + layer norm on the CPU: its values are those of the add followed by
// layernorm_forward (bitwise, f32 and f64, at a size that runs threaded too), the bf16 flag rounds
// the stored and normalised residual, and backward equals layernorm_backward plus the residual's
// gradient (within 4 ulps of the largest value; bitwise without dresidual) with a separate
// dresidual, with dresidual == dinp (in place) and without one.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/convert.hpp"
#include "trident/kernels/cpu/layernorm.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::random_vector;

namespace {

template <typename T>
bool bit_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// max |a - b| <= ulps * epsilon(T) * max |b|: the fused backward adds dresidual to the layer
// norm's gradient before rounding it (the compiler may contract the two into one FMA).
template <typename T>
bool close(const std::vector<T>& a, const std::vector<T>& b, double ulps) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  INFO("largest difference " << worst << " of values up to " << scale);
  return a.size() == b.size() && worst <= ulps * std::numeric_limits<T>::epsilon() * scale;
}

template <typename T>
void check_against_unfused(int64_t N, int64_t C) {
  const T eps = T(1e-5);
  const auto x = random_vector<T>(N * C, 11, -3, 3), delta = random_vector<T>(N * C, 12, -1, 1);
  const auto w = random_vector<T>(C, 13, 0.5, 1.5), b = random_vector<T>(C, 14);
  const auto dy = random_vector<T>(N * C, 15), dres = random_vector<T>(N * C, 16);

  // Unfused: residual = x + delta, then the layer norm and, backward, its dinp + dres.
  std::vector<T> res_u(N * C), out_u(N * C), mean_u(N), rstd_u(N), dx_u(N * C), dw_u(C), db_u(C);
  for (int64_t i = 0; i < N * C; ++i) res_u[i] = x[i] + delta[i];
  cpu::layernorm_forward(out_u.data(), mean_u.data(), rstd_u.data(), res_u.data(), w.data(),
                         b.data(), N, C, eps);
  cpu::layernorm_backward(dx_u.data(), dw_u.data(), db_u.data(), dy.data(), res_u.data(), w.data(),
                          mean_u.data(), rstd_u.data(), N, C);
  std::vector<T> dsum_u(N * C);
  for (int64_t i = 0; i < N * C; ++i) dsum_u[i] = dres[i] + dx_u[i];

  std::vector<T> res(N * C), out(N * C), mean(N), rstd(N);
  cpu::residual_layernorm_forward(res.data(), out.data(), mean.data(), rstd.data(), x.data(),
                                  delta.data(), w.data(), b.data(), N, C, eps);
  CHECK(bit_equal(res, res_u));
  CHECK(bit_equal(out, out_u));
  CHECK(bit_equal(mean, mean_u));
  CHECK(bit_equal(rstd, rstd_u));

  std::vector<T> dx(N * C), dw(C), db(C);
  cpu::residual_layernorm_backward(dx.data(), dw.data(), db.data(), dres.data(), dy.data(),
                                   res.data(), w.data(), mean.data(), rstd.data(), N, C);
  CHECK(close(dx, dsum_u, 4));
  CHECK(bit_equal(dw, dw_u));
  CHECK(bit_equal(db, db_u));

  std::vector<T> inplace = dres;  // dresidual and dinp one buffer
  cpu::residual_layernorm_backward(inplace.data(), dw.data(), db.data(), inplace.data(), dy.data(),
                                   res.data(), w.data(), mean.data(), rstd.data(), N, C);
  CHECK(close(inplace, dsum_u, 4));

  cpu::residual_layernorm_backward(dx.data(), dw.data(), db.data(), static_cast<const T*>(nullptr),
                                   dy.data(), res.data(), w.data(), mean.data(), rstd.data(), N, C);
  CHECK(bit_equal(dx, dx_u));
  CHECK(bit_equal(dw, dw_u));
}

}  // namespace

TEST_CASE("residual layernorm equals add then layernorm", "[kernels][layernorm][residual]") {
  SECTION("f32, small") {
    check_against_unfused<float>(7, 48);
  }
  SECTION("f64, odd C") {
    check_against_unfused<double>(5, 77);
  }
  SECTION("f32, threaded size") {
    check_against_unfused<float>(300, 777);
  }
}

TEST_CASE("residual layernorm rounds the residual to bf16 when asked",
          "[kernels][layernorm][residual]") {
  const int64_t N = 4, C = 40;
  auto x = random_vector<float>(N * C, 21, 50, 60);  // large values: the sum loses bits in bf16
  auto delta = random_vector<float>(N * C, 22, -0.3, 0.3);
  for (auto* v : {&x, &delta}) {
    for (float& e : *v) e = cpu::bf16_to_f32(cpu::f32_to_bf16(e));
  }
  const auto w = random_vector<float>(C, 23, 0.5, 1.5), b = random_vector<float>(C, 24);
  std::vector<float> res_u(N * C), out_u(N * C), mean_u(N), rstd_u(N);
  int rounded = 0;
  for (int64_t i = 0; i < N * C; ++i) {
    res_u[i] = cpu::bf16_to_f32(cpu::f32_to_bf16(x[i] + delta[i]));
    rounded += res_u[i] != x[i] + delta[i];
  }
  REQUIRE(rounded > N * C / 2);  // the flag matters for these inputs
  cpu::layernorm_forward(out_u.data(), mean_u.data(), rstd_u.data(), res_u.data(), w.data(),
                         b.data(), N, C, 1e-5f);
  std::vector<float> res(N * C), out(N * C), mean(N), rstd(N);
  cpu::residual_layernorm_forward(res.data(), out.data(), mean.data(), rstd.data(), x.data(),
                                  delta.data(), w.data(), b.data(), N, C, 1e-5f, true);
  CHECK(bit_equal(res, res_u));
  CHECK(bit_equal(out, out_u));
  CHECK(bit_equal(mean, mean_u));
  CHECK(bit_equal(rstd, rstd_u));
}
