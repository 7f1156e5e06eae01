// Mixed-precision Linear layers (bf16 input, f32 master weight and bias), on the CPU and on
// CUDA: the f32 weight and bias gradients per element against an f64 reference of the same bf16
// operands (a bf16-rounded gradient misses it by ~1e-3 of the largest element; f32 accumulation
// lands within 1e-5), their accumulation over two backward calls in place into views of one f32
// bucket (as the data-parallel buckets hold them), grad-ready hooks once per pass with the
// gradient complete, and ops::mlp_gelu (the GELU backward in the DGELU epilogue on CUDA) against
// the unfused linear_gelu + linear, f32 and mixed.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "gpu_test_util.hpp"
#include "trident/core/autograd.hpp"
#include "trident/core/ops.hpp"

namespace trident::gpu_test {
namespace {

Tensor make(const std::vector<float>& v, const Shape& shape, DType t, Device d, bool grad) {
  Tensor x = upload(v, t, d).reshape(shape);
  if (grad) x.requires_grad_();
  return x;
}

// Per element: |got - ref| <= tol * max |ref|.
void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double tol,
                  const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == ref.size());
  double scale = 0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (!(e <= worst)) {  // NaN counts as worst
      worst = std::isnan(e) ? INFINITY : e;
      at = i;
    }
  }
  INFO("worst element " << at << ": " << got[at] << " vs " << ref[at] << ", error " << worst
                        << " = " << worst / scale << " of max " << scale);
  CHECK(worst <= tol * scale);
}

std::vector<double> widen(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// f64 gradients of y = x w^T + b for upstream dy, from the bf16 values the op reads.
struct LinearRef {
  std::vector<double> dw, db, dx;
};
LinearRef linear_ref(const std::vector<float>& x, const std::vector<float>& w16,
                     const std::vector<float>& dy, int64_t R, int64_t N, int64_t K) {
  LinearRef r{std::vector<double>(size_t(N * K)), std::vector<double>(size_t(N)),
              std::vector<double>(size_t(R * K))};
  for (int64_t i = 0; i < R; ++i) {
    for (int64_t n = 0; n < N; ++n) {
      const double g = dy[size_t(i * N + n)];
      r.db[size_t(n)] += g;
      for (int64_t k = 0; k < K; ++k) {
        r.dw[size_t(n * K + k)] += g * x[size_t(i * K + k)];
        r.dx[size_t(i * K + k)] += g * w16[size_t(n * K + k)];
      }
    }
  }
  return r;
}

std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = round_bf16(x);
  return v;
}

std::vector<Device> devices() {
  return {Device::cpu(), gpu()};
}

}  // namespace

TEST_CASE("mixed linear: f32 weight and bias gradients per element against f64", "[mixed]") {
  const int64_t R = 96, N = 24, K = 40;  // N, K multiples of 8: cuBLASLt's fused epilogues
  std::mt19937_64 rng(test_seed());
  const auto xv = rounded(normal(size_t(R * K), rng)), gv = rounded(normal(size_t(R * N), rng));
  const auto wv = normal(size_t(N * K), rng, 0.3f), bv = normal(size_t(N), rng);
  const LinearRef ref = linear_ref(xv, rounded(wv), gv, R, N, K);
  for (Device d : devices()) {
    INFO("device " << d.str());
    Tensor x = make(xv, {R, K}, DType::BF16, d, true);
    Tensor w = make(wv, {N, K}, DType::F32, d, true), b = make(bv, {N}, DType::F32, d, true);
    Tensor y = ops::linear(x, w, b);
    REQUIRE(y.dtype() == DType::BF16);
    // One node on the f32 leaves themselves: no cast node between them and the matmul.
    REQUIRE(y.grad_fn()->edges.size() == 3);
    CHECK(y.grad_fn()->edges[1].leaf == w.impl_ptr());
    CHECK(y.grad_fn()->edges[2].leaf == b.impl_ptr());
    y.backward(make(gv, {R, N}, DType::BF16, d, false));
    REQUIRE(w.grad().dtype() == DType::F32);
    REQUIRE(b.grad().dtype() == DType::F32);
    expect_close(download(w.grad()), ref.dw, 1e-5, "dW");
    expect_close(download(b.grad()), ref.db, 1e-5, "db");
    expect_close(download(x.grad()), ref.dx, 1e-2, "dx (bf16)");
    // The forward: x w_bf16^T + b_bf16, rounded once to bf16.
    std::vector<double> yref(size_t(R * N));
    const auto w16 = rounded(wv), b16 = rounded(bv);
    for (int64_t i = 0; i < R; ++i) {
      for (int64_t n = 0; n < N; ++n) {
        double s = b16[size_t(n)];
        for (int64_t k = 0; k < K; ++k) s += double(xv[size_t(i * K + k)]) * w16[size_t(n * K + k)];
        yref[size_t(i * N + n)] = s;
      }
    }
    expect_close(download(y), yref, 1e-2, "y (bf16)");
  }
}

TEST_CASE("mixed linear: two micro-batches accumulate in place into bucket views, hooks once",
          "[mixed]") {
  const int64_t R = 64, N = 16, K = 24;
  std::mt19937_64 rng(test_seed() + 1);
  const auto x1 = rounded(normal(size_t(R * K), rng)), x2 = rounded(normal(size_t(R * K), rng));
  const auto g1 = rounded(normal(size_t(R * N), rng)), g2 = rounded(normal(size_t(R * N), rng));
  const auto wv = normal(size_t(N * K), rng, 0.3f), bv = normal(size_t(N), rng);
  const LinearRef r1 = linear_ref(x1, rounded(wv), g1, R, N, K);
  const LinearRef r2 = linear_ref(x2, rounded(wv), g2, R, N, K);
  // The bucket: [dW (N*K)] [3 sentinels] [db (N)] [5 sentinels]; the sentinels must survive.
  const int64_t b_off = N * K + 3, total = b_off + N + 5;
  const float sentinel = 7.0f;
  std::vector<float> init(size_t(total), 0.0f);
  for (int64_t i = N * K; i < b_off; ++i) init[size_t(i)] = sentinel;
  for (int64_t i = b_off + N; i < total; ++i) init[size_t(i)] = sentinel;
  for (Device d : devices()) {
    INFO("device " << d.str());
    Tensor bucket = upload(init, DType::F32, d);
    Tensor w = make(wv, {N, K}, DType::F32, d, true), b = make(bv, {N}, DType::F32, d, true);
    const Tensor wview = bucket.slice(0, 0, N * K).reshape({N, K});
    const Tensor bview = bucket.slice(0, b_off, b_off + N);
    REQUIRE(wview.raw_data() == bucket.raw_data());
    w.set_grad(wview);
    b.set_grad(bview);
    int w_hooks = 0, b_hooks = 0;
    std::vector<float> w_at_hook;
    w.register_grad_ready_hook([&](Tensor& p) {
      ++w_hooks;
      w_at_hook = download(p.grad());
    });
    b.register_grad_ready_hook([&](Tensor&) { ++b_hooks; });

    // Micro-batch 1: the weight used twice in one pass (x1 and x2 halves of the same upstream
    // gradient would do too); its hook fires once, after both contributions.
    Tensor y = ops::add(ops::linear(make(x1, {R, K}, DType::BF16, d, false), w, b),
                        ops::linear(make(x2, {R, K}, DType::BF16, d, false), w, b));
    y.backward(make(g1, {R, N}, DType::BF16, d, false));
    CHECK(w_hooks == 1);
    CHECK(b_hooks == 1);
    const LinearRef r12 = linear_ref(x2, rounded(wv), g1, R, N, K);
    std::vector<double> want_w(r1.dw.size()), want_b(r1.db.size());
    const LinearRef r11 = linear_ref(x1, rounded(wv), g1, R, N, K);
    for (size_t i = 0; i < want_w.size(); ++i) want_w[i] = r11.dw[i] + r12.dw[i];
    for (size_t i = 0; i < want_b.size(); ++i) want_b[i] = r11.db[i] + r12.db[i];
    expect_close(w_at_hook, want_w, 1e-5, "dW at the hook, pass 1");

    // Micro-batch 2: accumulates onto pass 1's sums.
    Tensor y2 = ops::linear(make(x2, {R, K}, DType::BF16, d, false), w, b);
    y2.backward(make(g2, {R, N}, DType::BF16, d, false));
    CHECK(w_hooks == 2);
    CHECK(b_hooks == 2);
    for (size_t i = 0; i < want_w.size(); ++i) want_w[i] += r2.dw[i];
    for (size_t i = 0; i < want_b.size(); ++i) want_b[i] += r2.db[i];
    // Still the bucket's views, written in place.
    CHECK(w.grad().raw_data() == wview.raw_data());
    CHECK(b.grad().raw_data() == bview.raw_data());
    const std::vector<float> all = download(bucket);
    expect_close(std::vector<float>(all.begin(), all.begin() + N * K), want_w, 1e-5, "bucket dW");
    expect_close(std::vector<float>(all.begin() + b_off, all.begin() + b_off + N), want_b, 1e-5,
                 "bucket db");
    for (int64_t i = N * K; i < b_off; ++i) CHECK(all[size_t(i)] == sentinel);
    for (int64_t i = b_off + N; i < total; ++i) CHECK(all[size_t(i)] == sentinel);
  }
}

TEST_CASE("mlp_gelu (DGELU epilogue) equals linear_gelu + linear, f32 and mixed", "[mixed]") {
  const int64_t R = 40, C = 16, H = 32, N = 24;
  std::mt19937_64 rng(test_seed() + 2);
  const auto xv = normal(size_t(R * C), rng), gv = normal(size_t(R * N), rng);
  const auto wf = normal(size_t(H * C), rng, 0.4f), bf = normal(size_t(H), rng, 0.5f);
  const auto wp = normal(size_t(N * H), rng, 0.3f), bp = normal(size_t(N), rng);
  for (Device d : devices()) {
    for (DType t : {DType::F32, DType::BF16}) {
      for (bool proj_bias : {true, false}) {
        INFO("device " << d.str() << ", " << dtype_name(t)
                       << (t == DType::BF16 ? " (f32 params)" : "")
                       << (proj_bias ? ", proj bias" : ", no proj bias"));
        // f32 throughout: the epilogue's f32 arithmetic against separate kernels. Mixed: the
        // unfused GELU backward reads the bf16-rounded dh, the epilogue its f32 value.
        const double tol = t == DType::F32 ? 1e-5 : 2e-2;
        Tensor out[2], grads[2][5];
        for (int fused = 0; fused < 2; ++fused) {
          Tensor x = make(xv, {R, C}, t, d, true);
          Tensor p[4] = {make(wf, {H, C}, DType::F32, d, true), make(bf, {H}, DType::F32, d, true),
                         make(wp, {N, H}, DType::F32, d, true), make(bp, {N}, DType::F32, d, true)};
          const Tensor b_proj = proj_bias ? p[3] : Tensor();
          out[fused] = fused ? ops::mlp_gelu(x, p[0], p[1], p[2], b_proj)
                             : ops::linear(ops::linear_gelu(x, p[0], p[1]), p[2], b_proj);
          if (fused) CHECK(out[fused].grad_fn()->name == "mlp_gelu");
          out[fused].backward(make(gv, {R, N}, t, d, false));
          grads[fused][0] = x.grad();
          for (int k = 0; k < 4; ++k) grads[fused][k + 1] = p[k].grad();
        }
        expect_close(download(out[1]), widen(download(out[0])), tol, "y");
        const char* names[5] = {"dx", "dW_fc", "db_fc", "dW_proj", "db_proj"};
        for (int k = 0; k < (proj_bias ? 5 : 4); ++k) {
          REQUIRE(grads[1][k].defined());
          CHECK(grads[1][k].dtype() == (k == 0 ? t : DType::F32));
          expect_close(download(grads[1][k]), widen(download(grads[0][k])), tol, names[k]);
        }
        if (!proj_bias) CHECK(!grads[1][4].defined());
      }
    }
  }
}

}  // namespace trident::gpu_test
