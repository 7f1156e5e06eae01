// Causal attention: forward against a naive double implementation (including the stored
// probabilities, zero above the diagonal), backward by central differences in double, at a
// small size and at T = 70 (two row blocks); neither threads over (b, h) pairs nor the
// alignment of the caller's buffers change a bit of the result.
#include <limits>
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/attention.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::cast_vector;
using trident::kernels::test::check_gradient;
using trident::kernels::test::OmpThreads;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;
using trident::kernels::test::weighted_sum;

namespace {

struct AttentionReference {
  std::vector<double> out, att;
};

AttentionReference reference_attention(const std::vector<double>& qkv, int64_t B, int64_t T,
                                       int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const double scale = 1 / std::sqrt(static_cast<double>(hs));
  AttentionReference r{std::vector<double>(B * T * C, 0.0),
                       std::vector<double>(B * NH * T * T, 0.0)};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const double* q = &qkv[(b * T + t) * 3 * C + h * hs];
        double* p = &r.att[((b * NH + h) * T + t) * T];
        double mx = -INFINITY, sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          const double* k = &qkv[(b * T + s) * 3 * C + C + h * hs];
          double dot = 0;
          for (int64_t i = 0; i < hs; ++i) dot += q[i] * k[i];
          p[s] = dot * scale;
          mx = std::max(mx, p[s]);
        }
        for (int64_t s = 0; s <= t; ++s) sum += (p[s] = std::exp(p[s] - mx));
        for (int64_t s = 0; s <= t; ++s) p[s] /= sum;
        for (int64_t s = 0; s <= t; ++s) {
          const double* v = &qkv[(b * T + s) * 3 * C + 2 * C + h * hs];
          for (int64_t i = 0; i < hs; ++i) r.out[(b * T + t) * C + h * hs + i] += p[s] * v[i];
        }
      }
    }
  }
  return r;
}

void check_attention_gradient(int64_t B, int64_t T, int64_t C, int64_t NH) {
  auto qkv = random_vector<double>(B * T * 3 * C, 201, -1.5, 1.5);
  const auto w = random_vector<double>(B * T * C, 202);
  std::vector<double> out(B * T * C), att(B * NH * T * T, std::numeric_limits<double>::quiet_NaN());
  const auto loss = [&] {
    cpu::attention_forward<double>(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return weighted_sum(out, w);
  };
  loss();
  const auto ref = reference_attention(qkv, B, T, C, NH);
  require_close(out, ref.out, 1e-12, 1e-13, "out");
  require_close(att, ref.att, 1e-12, 1e-13, "att (zeros above the diagonal)");
  std::vector<double> dqkv(qkv.size(), std::numeric_limits<double>::quiet_NaN());
  cpu::attention_backward<double>(dqkv.data(), w.data(), qkv.data(), att.data(), B, T, C, NH);
  check_gradient(qkv, dqkv, loss, "dqkv");
}

}  // namespace

TEST_CASE("attention forward and backward, small odd sizes", "[kernels][attention]") {
  check_attention_gradient(2, 5, 12, 3);
  check_attention_gradient(1, 1, 4, 1);  // a single token attends to itself only
}

TEST_CASE("attention forward and backward across row blocks", "[kernels][attention]") {
  OmpThreads threads(1);  // the gradient check runs ~3000 tiny forwards
  check_attention_gradient(1, 70, 8, 2);
}

TEST_CASE("attention gives identical results on 1 and 2 threads", "[kernels][attention]") {
  const int64_t B = 2, T = 70, C = 24, NH = 3;
  const auto qkv = random_vector<double>(B * T * 3 * C, 221, -1.5, 1.5);
  const auto dout = random_vector<double>(B * T * C, 222);
  std::vector<double> out[2], att[2], dqkv[2];
  for (int threads : {1, 2}) {
    OmpThreads scope(threads);
    auto& o = out[threads - 1];
    auto& a = att[threads - 1];
    auto& d = dqkv[threads - 1];
    o.resize(B * T * C);
    a.resize(B * NH * T * T);
    d.resize(qkv.size());
    cpu::attention_forward<double>(o.data(), a.data(), qkv.data(), B, T, C, NH);
    cpu::attention_backward<double>(d.data(), dout.data(), qkv.data(), a.data(), B, T, C, NH);
  }
  REQUIRE(out[0] == out[1]);
  REQUIRE(att[0] == att[1]);
  REQUIRE(dqkv[0] == dqkv[1]);
}

// Regression: the softmax used to run in place in `att`, where Eigen's vectorised exp and sum
// peel off the elements before the first 32-byte boundary, so results changed with where the
// caller's buffers started (and the 1-vs-2-threads test above failed depending on which tests
// had run before it and moved the heap).
TEMPLATE_TEST_CASE("attention results do not depend on the buffers' alignment",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  const int64_t B = 1, T_ = 70, C = 24, NH = 3;
  const auto qkv0 = random_vector<T>(B * T_ * 3 * C, 231, -1.5, 1.5);
  const auto dout0 = random_vector<T>(B * T_ * C, 232);
  const size_t n_out = B * T_ * C, n_att = B * NH * T_ * T_, n_qkv = qkv0.size();
  std::vector<T> first_out, first_att, first_dqkv;
  for (int64_t offset = 0; offset < 8; ++offset) {  // every start modulo 32 bytes
    std::vector<T> qkv(n_qkv + offset), dout(n_out + offset), out(n_out + offset),
        att(n_att + offset), dqkv(n_qkv + offset);
    std::copy(qkv0.begin(), qkv0.end(), qkv.begin() + offset);
    std::copy(dout0.begin(), dout0.end(), dout.begin() + offset);
    cpu::attention_forward<T>(out.data() + offset, att.data() + offset, qkv.data() + offset, B, T_,
                              C, NH);
    cpu::attention_backward<T>(dqkv.data() + offset, dout.data() + offset, qkv.data() + offset,
                               att.data() + offset, B, T_, C, NH);
    std::vector<T> o(out.begin() + offset, out.end()), a(att.begin() + offset, att.end()),
        d(dqkv.begin() + offset, dqkv.end());
    if (offset == 0) {
      first_out = o;
      first_att = a;
      first_dqkv = d;
      continue;
    }
    INFO("buffers offset by " << offset << " elements");
    REQUIRE(o == first_out);
    REQUIRE(a == first_att);
    REQUIRE(d == first_dqkv);
  }
}

TEST_CASE("attention in float matches the double reference", "[kernels][attention]") {
  const int64_t B = 2, T = 70, C = 24, NH = 3;
  const auto qkv = random_vector<double>(B * T * 3 * C, 211, -1.5, 1.5);
  const auto dout = random_vector<double>(B * T * C, 212);
  const auto ref = reference_attention(qkv, B, T, C, NH);
  std::vector<double> ddouble(qkv.size()), out_d(B * T * C), att_d(B * NH * T * T);
  cpu::attention_forward<double>(out_d.data(), att_d.data(), qkv.data(), B, T, C, NH);
  cpu::attention_backward<double>(ddouble.data(), dout.data(), qkv.data(), att_d.data(), B, T, C,
                                  NH);
  const auto qkvf = cast_vector<float>(qkv), doutf = cast_vector<float>(dout);
  std::vector<float> out(B * T * C), att(B * NH * T * T, std::numeric_limits<float>::quiet_NaN()),
      dqkv(qkv.size());
  cpu::attention_forward<float>(out.data(), att.data(), qkvf.data(), B, T, C, NH);
  require_close(out, ref.out, 1e-5, 1e-6, "out");
  require_close(att, ref.att, 1e-5, 1e-7, "att");
  cpu::attention_backward<float>(dqkv.data(), doutf.data(), qkvf.data(), att.data(), B, T, C, NH);
  require_close(dqkv, ddouble, 1e-4, 1e-5, "dqkv");
}

TEST_CASE("attention rejects a head count that does not divide C", "[kernels][attention]") {
  std::vector<float> qkv(3 * 12), out(12), att(1);
  REQUIRE_THROWS_AS(cpu::attention_forward<float>(out.data(), att.data(), qkv.data(), 1, 1, 12, 5),
                    std::invalid_argument);
}
