// The Llama ops on the CPU: gradients against central finite differences in f64, forward
// values against f64 references written out here from the definitions (RMSNorm, Hugging Face's
// rotate_half RoPE with its f32 angles, SwiGLU), the GQA packing against a grouped-query
// attention computed head by head, and bf16 runs equal to the f32 kernels' results rounded
// once (the CPU backend's bf16 contract), gradients included.
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "grad_check.hpp"
#include "trident/core/error.hpp"

using namespace trident;
using trident::testing::grad_check_error;
using trident::testing::randn;

namespace {

constexpr double kTol = 1e-6;
using V = std::vector<Tensor>;

// Hugging Face's LlamaRotaryEmbedding angle, each step in f32 as torch computes it:
// inv_freq = 1 / base ** (arange(0, D, 2).float() / D), freqs = position.float() * inv_freq.
double hf_angle(int64_t p, int64_t i, int64_t D, double theta) {
  const float e = static_cast<float>(2 * i) / static_cast<float>(D);
  const float inv_freq = 1.0f / std::pow(static_cast<float>(theta), e);
  return static_cast<double>(static_cast<float>(p) * inv_freq);
}

// The largest |a - b| / (atol + rtol |b|) over the elements (<= 1 passes).
double worst(const std::vector<double>& a, const std::vector<double>& b, double rtol, double atol) {
  REQUIRE(a.size() == b.size());
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i)
    w = std::max(w, std::abs(a[i] - b[i]) / (atol + rtol * std::abs(b[i])));
  return w;
}

// tests/fixtures/llama_ops_reference.txt (tests/reference/make_llama_ops_fixtures.py): one
// f32 tensor per line, `name d0xd1x... values`.
std::map<std::string, Tensor> read_llama_ops_fixture() {
  std::ifstream in(std::string(TRIDENT_FIXTURE_DIR) + "/llama_ops_reference.txt");
  REQUIRE(in.good());
  std::map<std::string, Tensor> tensors;
  std::string row;
  while (std::getline(in, row)) {
    if (row.empty() || row[0] == '#') continue;
    std::istringstream fields(row);
    std::string name, dims;
    fields >> name >> dims;
    Shape shape;
    std::istringstream ds(dims);
    for (std::string d; std::getline(ds, d, 'x');) shape.push_back(std::stoll(d));
    std::vector<float> values;
    for (float v; fields >> v;) values.push_back(v);
    tensors.emplace(name, Tensor::from_vector(values, shape));
  }
  return tensors;
}

}  // namespace

TEST_CASE("grad check: rms_norm", "[core][autograd][llama]") {
  CHECK(grad_check_error([](const V& x) { return ops::rms_norm(x[0], x[1], 1e-5); },
                         {randn({2, 3, 8}, 101), randn({8}, 102)}) < kTol);
  // A large eps weighs in the gradient too.
  CHECK(grad_check_error([](const V& x) { return ops::rms_norm(x[0], x[1], 0.5); },
                         {randn({5, 7}, 103), randn({7}, 104)}) < kTol);
}

TEST_CASE("grad check: rope at offsets 0 and 5, head sizes 2 and 6", "[core][autograd][llama]") {
  CHECK(grad_check_error([](const V& x) { return ops::rope(x[0], 3, 10000.0, 0); },
                         {randn({2, 4, 18}, 105)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::rope(x[0], 2, 500000.0, 5); },
                         {randn({1, 3, 4}, 106)}) < kTol);
}

TEST_CASE("grad check: swiglu", "[core][autograd][llama]") {
  const Tensor gate = randn({3, 10}, 107) * 3.0;  // through silu's curved part and both tails
  CHECK(grad_check_error([](const V& x) { return ops::swiglu(x[0], x[1]); },
                         {gate.detach(), randn({3, 10}, 108)}) < kTol);
}

TEST_CASE("grad check: gqa_pack_qkv, alone and into causal attention", "[core][autograd][llama]") {
  for (const auto& [H, Hkv] : std::vector<std::pair<int64_t, int64_t>>{{4, 2}, {4, 1}, {2, 2}}) {
    INFO(H << " heads, " << Hkv << " kv heads");
    const int64_t D = 3;
    // Fresh inputs for each check: a leaf's gradient accumulates across backward passes.
    auto in = [H = H, Hkv = Hkv] {
      return V{randn({2, 3, H * D}, 109), randn({2, 3, Hkv * D}, 110), randn({2, 3, Hkv * D}, 111)};
    };
    CHECK(grad_check_error([H = H, Hkv = Hkv](
                               const V& x) { return ops::gqa_pack_qkv(x[0], x[1], x[2], H, Hkv); },
                           in()) < kTol);
    CHECK(grad_check_error(
              [H = H, Hkv = Hkv](const V& x) {
                return ops::causal_self_attention(ops::gqa_pack_qkv(x[0], x[1], x[2], H, Hkv), H);
              },
              in()) < kTol);
  }
}

TEST_CASE("rms_norm equals x / sqrt(mean(x^2) + eps) * weight", "[core][llama]") {
  const int64_t N = 6, C = 33;
  const Tensor x = randn({N, C}, 120, DType::F32), w = randn({C}, 121, DType::F32);
  const double eps = 1e-5;
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> want(static_cast<size_t>(N * C));
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xv[n * C + c] * xv[n * C + c];
    const double rs = 1.0 / std::sqrt(ss / C + eps);
    for (int64_t c = 0; c < C; ++c) want[n * C + c] = xv[n * C + c] * rs * wv[c];
  }
  CHECK(worst(ops::rms_norm(x, w, eps).to_vector<double>(), want, 1e-6, 1e-6) <= 1);
  // No rows: the weight's gradient is zero, not left unwritten.
  Tensor empty_x = Tensor::zeros({0, C}), w2 = w.clone();
  w2.requires_grad_(true);
  ops::rms_norm(empty_x, w2).backward(Tensor::zeros({0, C}));
  for (double g : w2.grad().to_vector<double>()) CHECK(g == 0.0);
}

TEST_CASE("rope rotates each head's (i, i + D/2) pairs by Hugging Face's angles", "[core][llama]") {
  const int64_t B = 2, T = 5, H = 3, D = 8, offset = 7;
  const double theta = 500000.0;
  const Tensor x = randn({B, T, H * D}, 122, DType::F32);
  const auto xv = x.to_vector<double>();
  std::vector<double> want(xv.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const double a = hf_angle(offset + t, i, D, theta);
          const int64_t base = (b * T + t) * H * D + h * D;
          const double x1 = xv[base + i], x2 = xv[base + i + D / 2];
          want[base + i] = x1 * std::cos(a) - x2 * std::sin(a);
          want[base + i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  CHECK(worst(ops::rope(x, H, theta, offset).to_vector<double>(), want, 1e-6, 1e-6) <= 1);
  // Position 0 is the identity; a later window at its offset equals that part of the whole.
  const Tensor at0 = ops::rope(x.slice(1, 0, 1).contiguous(), H, theta, 0);
  CHECK(at0.to_vector<float>() == x.slice(1, 0, 1).contiguous().to_vector<float>());
  const Tensor whole = ops::rope(x, H, theta, 0);
  const Tensor tail = ops::rope(x.slice(1, 2, T).contiguous(), H, theta, 2);
  CHECK(tail.to_vector<float>() == whole.slice(1, 2, T).contiguous().to_vector<float>());
}

TEST_CASE("rope's scores depend on relative position only", "[core][llama]") {
  // <rope(q) at m, rope(k) at n> = <q, rope(k) at n - m>: shift both by 11, the dot products
  // stay (f64 run, angles from the same f32 frequencies).
  const int64_t T = 6, D = 16;
  const Tensor q = randn({1, T, D}, 123), k = randn({1, T, D}, 124);
  auto scores = [&](int64_t offset) {
    const auto qr = ops::rope(q, 1, 10000.0, offset).to_vector<double>();
    const auto kr = ops::rope(k, 1, 10000.0, offset).to_vector<double>();
    std::vector<double> s;
    for (int64_t m = 0; m < T; ++m)
      for (int64_t n = 0; n < T; ++n) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qr[m * D + d] * kr[n * D + d];
        s.push_back(dot);
      }
    return s;
  };
  CHECK(worst(scores(11), scores(0), 1e-5, 1e-5) <= 1);
}

TEST_CASE("swiglu equals silu(gate) * up", "[core][llama]") {
  std::vector<float> g = {-100.0f, -20.0f, -3.0f, -0.5f, 0.0f, 0.25f, 2.0f, 15.0f, 90.0f};
  const int64_t n = static_cast<int64_t>(g.size());
  const Tensor gate = Tensor::from_vector(g, {n}), up = randn({n}, 125, DType::F32);
  const auto uv = up.to_vector<double>();
  std::vector<double> want;
  for (int64_t i = 0; i < n; ++i) want.push_back(g[i] / (1.0 + std::exp(-double(g[i]))) * uv[i]);
  CHECK(worst(ops::swiglu(gate, up).to_vector<double>(), want, 1e-6, 1e-30) <= 1);
}

TEST_CASE("gqa_pack_qkv feeds causal attention the repeated kv heads", "[core][llama]") {
  // Attention over the packed tensor equals grouped-query attention computed here head by
  // head from q, k and v: query head h attends with kv head h / (H / Hkv).
  const int64_t B = 2, T = 5, H = 6, Hkv = 2, D = 4, group = H / Hkv;
  const Tensor q = randn({B, T, H * D}, 126), k = randn({B, T, Hkv * D}, 127),
               v = randn({B, T, Hkv * D}, 128);
  const Tensor qkv = ops::gqa_pack_qkv(q, k, v, H, Hkv);
  REQUIRE(qkv.shape() == Shape{B, T, 3 * H * D});
  const auto out = ops::causal_self_attention(qkv, H).to_vector<double>();
  const auto qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> want(static_cast<size_t>(B * T * H * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t j = h / group;
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s;
        double mx = -INFINITY, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qv[(b * T + t) * H * D + h * D + d] * kv[(b * T + u) * Hkv * D + j * D + d];
          s.push_back(dot / std::sqrt(double(D)));
          mx = std::max(mx, s.back());
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t u = 0; u <= t; ++u) o += s[u] / sum * vv[(b * T + u) * Hkv * D + j * D + d];
          want[(b * T + t) * H * D + h * D + d] = o;
        }
      }
    }
  CHECK(worst(out, want, 1e-12, 1e-12) <= 1);
  // The gradient of k sums its group's heads: with a gradient of ones on the packed tensor,
  // dk = H / Hkv everywhere, dq = 1.
  Tensor q2 = q.clone(), k2 = k.clone(), v2 = v.clone();
  for (Tensor* t : {&q2, &k2, &v2}) t->requires_grad_(true);
  ops::sum(ops::gqa_pack_qkv(q2, k2, v2, H, Hkv)).backward();
  for (double g : q2.grad().to_vector<double>()) CHECK(g == 1.0);
  for (double g : k2.grad().to_vector<double>()) CHECK(g == double(group));
  for (double g : v2.grad().to_vector<double>()) CHECK(g == double(group));
}

TEST_CASE("Llama ops reject bad shapes with the shapes in the message", "[core][llama]") {
  const Tensor x = randn({2, 3, 12}, 129, DType::F32);
  CHECK_THROWS_WITH(ops::rms_norm(x, randn({5}, 1, DType::F32)), Catch::Contains("must be (12,)"));
  CHECK_THROWS_WITH(ops::rope(x, 4, 10000.0), Catch::Contains("head size 3"));
  CHECK_THROWS_WITH(ops::rope(x, 5, 10000.0), Catch::Contains("5 heads do not divide"));
  CHECK_THROWS_WITH(ops::swiglu(x, randn({2, 3, 11}, 2, DType::F32)),
                    Catch::Contains("same shape"));
  const Tensor kv = randn({2, 3, 6}, 3, DType::F32);
  CHECK_THROWS_WITH(ops::gqa_pack_qkv(x, kv, kv, 4, 3), Catch::Contains("3 kv heads"));
  CHECK_THROWS_WITH(ops::gqa_pack_qkv(x, kv, kv, 4, 1), Catch::Contains("must be (2, 3, 3)"));
  CHECK_THROWS_AS(ops::gqa_pack_qkv(x, kv, kv.to(DType::F64), 4, 2), Error);
}

TEST_CASE("Llama ops in bf16 are the f32 kernels rounded once, gradients too",
          "[core][bf16][llama]") {
  // Inputs are bf16 values; each op is one kernel forward and one backward, so bf16 outputs
  // and gradients must equal the f32 run's rounded to bf16 bit for bit. Inputs near 10 for
  // rms_norm: a bf16 rstd would change its gradients.
  using Op = std::function<Tensor(const V&)>;
  const std::vector<std::pair<const char*, std::pair<Op, V>>> cases = {
      {"rms_norm",
       {[](const V& x) { return ops::rms_norm(x[0], x[1]); },
        {ops::add_scalar(randn({4, 40}, 130, DType::F32), 10.0), randn({40}, 131, DType::F32)}}},
      {"rope",
       {[](const V& x) { return ops::rope(x[0], 2, 10000.0, 3); },
        {randn({2, 5, 16}, 132, DType::F32)}}},
      {"swiglu",
       {[](const V& x) { return ops::swiglu(x[0], x[1]); },
        {randn({3, 20}, 133, DType::F32) * 3.0, randn({3, 20}, 134, DType::F32)}}},
      {"gqa_pack_qkv",
       {[](const V& x) { return ops::gqa_pack_qkv(x[0], x[1], x[2], 4, 2); },
        {randn({2, 3, 8}, 135, DType::F32), randn({2, 3, 4}, 136, DType::F32),
         randn({2, 3, 4}, 137, DType::F32)}}},
  };
  for (const auto& [name, c] : cases) {
    INFO(name);
    const auto& [op, inputs] = c;
    std::vector<std::vector<float>> outs[2];
    for (int bf = 0; bf < 2; ++bf) {
      V x;
      for (const Tensor& t : inputs) {
        x.push_back(t.to(DType::BF16).to(bf ? DType::BF16 : DType::F32).detach());
        x.back().requires_grad_(true);
      }
      const Tensor y = op(x);
      REQUIRE(y.dtype() == (bf ? DType::BF16 : DType::F32));
      const Tensor R = randn(y.shape(), 138, DType::F32).to(DType::BF16).to(y.dtype());
      ops::sum(ops::mul(y, R)).backward();
      // f32 results rounded to bf16 (the bf16 run's are bf16 already).
      outs[bf].push_back(y.to(DType::BF16).to(DType::F32).to_vector<float>());
      for (const Tensor& t : x) {
        // The f32 run's upstream gradient R is exact in bf16, so its gradients are the same
        // f32 kernel on the same values as the bf16 run's.
        outs[bf].push_back(t.grad().to(DType::BF16).to(DType::F32).to_vector<float>());
      }
    }
    REQUIRE(outs[0].size() == outs[1].size());
    for (size_t i = 0; i < outs[0].size(); ++i) {
      INFO("buffer " << i << " (0: output, then the inputs' gradients)");
      CHECK(outs[1][i] == outs[0][i]);
    }
  }
}

TEST_CASE("Llama ops match Hugging Face's definitions in PyTorch (values and gradients)",
          "[core][llama][reference]") {
  // f32 runs against float64 torch on the same inputs; RoPE's angles are HF's float32 ones.
  const auto fx = read_llama_ops_fixture();
  const std::map<std::string, std::pair<std::vector<std::string>, std::function<Tensor(const V&)>>>
      cases = {
          {"rms_norm", {{"x", "w"}, [](const V& x) { return ops::rms_norm(x[0], x[1], 1e-5); }}},
          {"rope", {{"x"}, [](const V& x) { return ops::rope(x[0], 2, 10000.0, 3); }}},
          {"rope_long", {{"x"}, [](const V& x) { return ops::rope(x[0], 1, 500000.0, 1000); }}},
          {"swiglu", {{"gate", "up"}, [](const V& x) { return ops::swiglu(x[0], x[1]); }}},
          {"gqa_attention",
           {{"q", "k", "v"},
            [](const V& x) {
              return ops::causal_self_attention(ops::gqa_pack_qkv(x[0], x[1], x[2], 4, 2), 4);
            }}},
      };
  for (const auto& [name, c] : cases) {
    INFO(name);
    V x;
    for (const std::string& in : c.first) {
      REQUIRE(fx.count(name + "." + in) == 1);
      x.push_back(fx.at(name + "." + in).clone());
      x.back().requires_grad_(true);
    }
    const Tensor y = c.second(x);
    REQUIRE(y.shape() == fx.at(name + ".out").shape());
    ops::sum(ops::mul(y, fx.at(name + ".R"))).backward();
    // Every element within 1e-5 relative plus 1e-6 of the tensor's largest entry.
    auto check = [](const std::string& what, const Tensor& got, const Tensor& want) {
      INFO(what);
      REQUIRE(got.shape() == want.shape());
      const auto w = want.to_vector<double>();
      double mx = 0;
      for (double v : w) mx = std::max(mx, std::abs(v));
      CHECK(worst(got.to_vector<double>(), w, 1e-5, 1e-6 * mx) <= 1);
    };
    check("out", y, fx.at(name + ".out"));
    for (size_t k = 0; k < x.size(); ++k)
      check("grad_" + c.first[k], x[k].grad(), fx.at(name + ".grad_" + c.first[k]));
  }
}
