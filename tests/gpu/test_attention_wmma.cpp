// The tensor-core flash attention (kernels/cuda/attention_fa2_*.cu) through the CUDA Backend, bf16
// storage, head sizes 64 and 128, T across and inside the 64-row tiles, several (batch, head)
// pairs: out, dQ, dK and dV against the CPU attention in double on the same bf16-rounded inputs,
// element by element, and the launch counters prove that the tensor-core kernels ran (a silent
// fallback to the SIMT kernels fails). TRIDENT_ATTENTION_DETERMINISTIC=1 must take the SIMT
// backward and give the same numbers within the same bound.
//
// The bound per element is |gpu - ref| <= u |ref| + 4 u mag, u = 2^-8 (bf16's unit roundoff):
// the output rounds to bf16 once (u |ref|), and the kernels round each probability P and each
// dS = P (dP - D) to bf16 before a tensor-core product, and D comes from the bf16 output, so the
// error of a sum of such terms is bounded by a few u times the sum of the terms' magnitudes,
// `mag` (computed here in double):
//   out_i  = sum_j P_ij V_j              mag = sum_j P_ij |V_j|
//   dV_j   = sum_i P_ij dO_i             mag = sum_i P_ij |dO_i|
//   dQ_i   = s sum_j dS_ij K_j           mag = s sum_j P_ij (|dP_ij| + Dm_i) |K_j|
//   dK_j   = s sum_i dS_ij Q_i           mag = s sum_i P_ij (|dP_ij| + Dm_i) |Q_i|
// (dP_ij = dO_i . V_j, s = 1/sqrt(hs), D_i = dO_i . O_i, and Dm_i = sum_d |dO_id| (|O_id| +
// mag(O_id)) bounds both |D_i| and, times a few u, the error of D_i from the rounded output).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.hpp"
#include "trident/core/backend.hpp"
#include "trident/kernels/cpu/attention.hpp"
#include "trident/kernels/cuda/attention.hpp"

namespace trident::gpu_test {
namespace {

namespace kc = kernels::cuda;
constexpr double kU = 1.0 / 256;  // bf16 unit roundoff

struct Shape {
  int64_t B, T, NH, hs;
  std::string name() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
           " hs=" + std::to_string(hs);
  }
};

// The double reference and the per-element magnitudes of the bound above.
struct Reference {
  std::vector<double> out, dqkv, out_mag, dqkv_mag;
};

Reference reference(const Shape& s, const std::vector<float>& qkv_f,
                    const std::vector<float>& dout_f) {
  const int64_t B = s.B, T = s.T, NH = s.NH, hs = s.hs, C = NH * hs, ld = 3 * C;
  const std::vector<double> qkv(qkv_f.begin(), qkv_f.end()), dout(dout_f.begin(), dout_f.end());
  Reference r;
  r.out.resize(static_cast<size_t>(B * T * C));
  r.dqkv.resize(static_cast<size_t>(B * T * ld));
  std::vector<double> att(static_cast<size_t>(B * NH * T * T));
  kernels::cpu::attention_forward<double>(r.out.data(), att.data(), qkv.data(), B, T, C, NH);
  kernels::cpu::attention_backward<double>(r.dqkv.data(), dout.data(), qkv.data(), att.data(), B, T,
                                           C, NH);
  r.out_mag.assign(r.out.size(), 0.0);
  r.dqkv_mag.assign(r.dqkv.size(), 0.0);
  const double sc = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      auto q = [&](int64_t t) { return &qkv[static_cast<size_t>((b * T + t) * ld + h * hs)]; };
      auto k = [&](int64_t t) { return q(t) + C; };
      auto v = [&](int64_t t) { return q(t) + 2 * C; };
      auto g = [&](int64_t t) { return &dout[static_cast<size_t>((b * T + t) * C + h * hs)]; };
      auto P = [&](int64_t i, int64_t j) {
        return att[static_cast<size_t>(((b * NH + h) * T + i) * T + j)];
      };
      for (int64_t i = 0; i < T; ++i) {
        const size_t oi = static_cast<size_t>((b * T + i) * C + h * hs);
        std::vector<double> dp(static_cast<size_t>(i + 1));
        for (int64_t j = 0; j <= i; ++j) {
          double x = 0;
          for (int64_t d = 0; d < hs; ++d) {
            x += g(i)[d] * v(j)[d];
            r.out_mag[oi + static_cast<size_t>(d)] += P(i, j) * std::abs(v(j)[d]);
          }
          dp[static_cast<size_t>(j)] = x;
        }
        // D_i = dO_i . O_i from the rounded output: its size and its error's.
        double D = 0;
        for (int64_t d = 0; d < hs; ++d) {
          const size_t e = oi + static_cast<size_t>(d);
          D += std::abs(g(i)[d]) * (std::abs(r.out[e]) + r.out_mag[e]);
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double p = P(i, j), w = sc * p * (std::abs(dp[static_cast<size_t>(j)]) + D);
          for (int64_t d = 0; d < hs; ++d) {
            const size_t qi = static_cast<size_t>((b * T + i) * ld + h * hs + d);
            const size_t kj = static_cast<size_t>((b * T + j) * ld + h * hs + d);
            r.dqkv_mag[qi] += w * std::abs(k(j)[d]);
            r.dqkv_mag[kj + static_cast<size_t>(C)] += w * std::abs(q(i)[d]);
            r.dqkv_mag[kj + static_cast<size_t>(2 * C)] += p * std::abs(g(i)[d]);
          }
        }
      }
    }
  }
  return r;
}

// Every element within u |ref| + 4 u mag; reports the worst ratio error / bound.
void check_elements(const std::string& what, const std::vector<float>& got,
                    const std::vector<double>& ref, const std::vector<double>& mag) {
  REQUIRE(got.size() == ref.size());
  double worst = 0;
  size_t worst_at = 0, bad = 0;
  for (size_t e = 0; e < ref.size(); ++e) {
    const double bound = kU * std::abs(ref[e]) + 4 * kU * mag[e] + 1e-30;
    const double ratio = std::isfinite(got[e]) ? std::abs(got[e] - ref[e]) / bound : INFINITY;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_at = e;
    }
  }
  INFO(what << ": worst element " << worst_at << " got " << got[worst_at] << " ref "
            << ref[worst_at] << " mag " << mag[worst_at] << " (error / bound " << worst << ")");
  CHECK(bad == 0);
  WARN(what << ": worst error / bound " << worst);
}

// Runs forward and backward on the GPU backend (bf16) and checks every element; `expect_tc_bwd`
// says whether the backward must be the tensor-core one.
void run_case(const Shape& s, uint64_t seed, bool expect_tc_bwd) {
  const int64_t C = s.NH * s.hs;
  std::mt19937_64 rng(seed);
  std::vector<float> qkv = normal(static_cast<size_t>(s.B * s.T * 3 * C), rng);
  std::vector<float> dout = normal(static_cast<size_t>(s.B * s.T * C), rng);
  for (float& x : qkv) x = round_bf16(x);
  for (float& x : dout) x = round_bf16(x);
  const Reference ref = reference(s, qkv, dout);

  Backend& be = backend_for(gpu());
  const Tensor x = upload(qkv, DType::BF16), g = upload(dout, DType::BF16);
  Tensor out = poisoned(s.B * s.T * C, DType::BF16), dx = poisoned(s.B * s.T * 3 * C, DType::BF16);
  // Backward reads `out` itself: the saved buffer holds only the f32 log-sum-exps (B, NH, T),
  // two bf16 elements each (no copy of out).
  const int64_t saved = be.attention_saved_elements(DType::BF16, s.B, s.T, C, s.NH);
  CHECK(saved == s.B * s.NH * s.T * 2);
  Tensor att = Tensor::empty({saved}, DType::BF16, gpu());
  const kc::AttentionKernelCounts before = kc::attention_kernel_counts();
  be.attention_forward(DType::BF16, out.raw_data(), att.raw_data(), x.raw_data(), s.B, s.T, C,
                       s.NH);
  be.attention_backward(DType::BF16, dx.raw_data(), g.raw_data(), x.raw_data(), out.raw_data(),
                        att.raw_data(), s.B, s.T, C, s.NH);
  be.synchronize();
  const kc::AttentionKernelCounts after = kc::attention_kernel_counts();
  CHECK(after.fa2_forward == before.fa2_forward + 1);
  CHECK(after.simt_forward == before.simt_forward);
  CHECK(after.fa2_backward == before.fa2_backward + (expect_tc_bwd ? 1 : 0));
  CHECK(after.simt_backward == before.simt_backward + (expect_tc_bwd ? 0 : 1));

  check_elements("out", download(out), ref.out, ref.out_mag);
  // dqkv split into its q, k and v parts so a failure names the gradient.
  const std::vector<float> got = download(dx);
  const char* part_names[3] = {"dQ", "dK", "dV"};
  for (int part = 0; part < 3; ++part) {
    std::vector<float> gp;
    std::vector<double> rp, mp;
    for (int64_t bt = 0; bt < s.B * s.T; ++bt) {
      for (int64_t c = 0; c < C; ++c) {
        const size_t e = static_cast<size_t>(bt * 3 * C + part * C + c);
        gp.push_back(got[e]);
        rp.push_back(ref.dqkv[e]);
        mp.push_back(ref.dqkv_mag[e]);
      }
    }
    check_elements(part_names[part], gp, rp, mp);
  }
}

// Sets an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

const Shape kShapes[] = {{1, 1, 2, 64},  {2, 17, 2, 64},  {1, 80, 3, 64},  {1, 130, 2, 64},
                         {1, 1, 2, 128}, {2, 17, 1, 128}, {1, 80, 2, 128}, {1, 130, 2, 128}};

TEST_CASE("tensor-core attention matches the CPU per element (bf16, hs 64 and 128)",
          "[attention][gpu]") {
  for (const Shape& s : kShapes) {
    INFO(s.name() << ", seed " << test_seed());
    run_case(s, test_seed() + static_cast<uint64_t>(s.T * 131 + s.hs), true);
  }
}

TEST_CASE("TRIDENT_ATTENTION_DETERMINISTIC=1 takes the SIMT backward after the tensor-core forward",
          "[attention][gpu]") {
  ScopedEnv env("TRIDENT_ATTENTION_DETERMINISTIC", "1");
  for (const Shape& s : {Shape{2, 17, 2, 64}, Shape{1, 80, 2, 128}}) {
    INFO(s.name() << ", seed " << test_seed());
    run_case(s, test_seed() + 7, false);
  }
}

}  // namespace
}  // namespace trident::gpu_test
