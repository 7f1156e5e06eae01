// Every differentiable op against central finite differences in f64.
#include "grad_check.hpp"

using namespace trident;
using trident::testing::grad_check_error;
using trident::testing::randn;

namespace {
constexpr double kTol = 1e-6;
using V = std::vector<Tensor>;

Tensor ids(const std::vector<int32_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}
}  // namespace

TEST_CASE("grad check: broadcasting add, sub, mul, div", "[core][autograd]") {
  const Tensor a = randn({2, 3, 4}, 1), b = randn({3, 1}, 2);
  CHECK(grad_check_error([](const V& x) { return x[0] + x[1]; }, {a.clone(), b.clone()}) < kTol);
  CHECK(grad_check_error([](const V& x) { return x[0] - x[1]; }, {a.clone(), b.clone()}) < kTol);
  CHECK(grad_check_error([](const V& x) { return x[0] * x[1]; }, {a.clone(), b.clone()}) < kTol);
  const Tensor pos = ops::add_scalar(randn({3, 1}, 3) * 0.1, 2.0).detach();
  CHECK(grad_check_error([](const V& x) { return x[0] / x[1]; }, {a.clone(), pos.clone()}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::add_scalar(x[0] * 3.0, 1.5); }, {a.clone()}) <
        kTol);
}

TEST_CASE("grad check: sum, mean", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::sum(x[0]); }, {randn({4, 5}, 4)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::mean(x[0]); }, {randn({4, 5}, 5)}) < kTol);
}

TEST_CASE("grad check: matmul 2-d, folded and batched", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::matmul(x[0], x[1]); },
                         {randn({3, 5}, 6), randn({5, 4}, 7)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::matmul(x[0], x[1]); },
                         {randn({2, 3, 5}, 8), randn({5, 4}, 9)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::matmul(x[0], x[1]); },
                         {randn({2, 3, 5}, 10), randn({2, 5, 4}, 11)}) < kTol);
  // A transposed (non-contiguous) operand.
  CHECK(grad_check_error([](const V& x) { return ops::matmul(x[0].transpose(0, 1), x[1]); },
                         {randn({5, 3}, 12), randn({5, 4}, 13)}) < kTol);
}

TEST_CASE("grad check: linear with and without bias", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::linear(x[0], x[1], x[2]); },
                         {randn({2, 3, 5}, 14), randn({4, 5}, 15), randn({4}, 16)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::linear(x[0], x[1]); },
                         {randn({3, 5}, 17), randn({4, 5}, 18)}) < kTol);
}

TEST_CASE("grad check: linear_gelu, and it equals gelu(linear) bit for bit", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::linear_gelu(x[0], x[1], x[2]); },
                         {randn({2, 3, 5}, 41), randn({8, 5}, 42), randn({8}, 43)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::linear_gelu(x[0], x[1], Tensor()); },
                         {randn({3, 5}, 44), randn({4, 5}, 45)}) < kTol);
  // Same values and gradients as the two ops it fuses (the MLP switched to it).
  const V in = {randn({4, 6}, 46), randn({8, 6}, 47), randn({8}, 48)};
  std::vector<std::vector<double>> grads[2];
  std::vector<double> outs[2];
  for (int fused = 0; fused < 2; ++fused) {
    V x;
    for (const Tensor& t : in) {
      x.push_back(t.clone());
      x.back().requires_grad_();
    }
    const Tensor y =
        fused ? ops::linear_gelu(x[0], x[1], x[2]) : ops::gelu(ops::linear(x[0], x[1], x[2]));
    ops::sum(y * y).backward();
    outs[fused] = y.to_vector<double>();
    for (const Tensor& t : x) grads[fused].push_back(t.grad().to_vector<double>());
  }
  CHECK(outs[0] == outs[1]);
  CHECK(grads[0] == grads[1]);
}

TEST_CASE("grad check: embedding with repeated ids", "[core][autograd]") {
  const Tensor i = ids({0, 3, 3, 1, 4, 0}, {2, 3});
  CHECK(grad_check_error([i](const V& x) { return ops::embedding(i, x[0]); }, {randn({5, 4}, 19)}) <
        kTol);
}

TEST_CASE("grad check: layer norm, gelu, softmax", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::layer_norm(x[0], x[1], x[2]); },
                         {randn({2, 3, 6}, 20), randn({6}, 21), randn({6}, 22)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::gelu(x[0]); }, {randn({3, 7}, 23)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return ops::softmax(x[0]); }, {randn({3, 7}, 24)}) <
        kTol);
}

TEST_CASE("grad check: causal self-attention", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::causal_self_attention(x[0], 3); },
                         {randn({2, 5, 3 * 6}, 25)}) < kTol);
}

TEST_CASE("grad check: cross entropy with an ignored target", "[core][autograd]") {
  const Tensor t = ids({2, 0, -1, 6, 3, 1}, {2, 3});
  CHECK(grad_check_error([t](const V& x) { return ops::cross_entropy(x[0], t); },
                         {randn({2, 3, 7}, 26)}) < kTol);
}

// The fused classifier writes its gradient over the logits (hence `x * 1.0`: an op's output,
// not the leaf being perturbed); columns 5 and 6 are padding. The random upstream gradient
// exercises the backward's rescale.
TEST_CASE("grad check: fused classifier over a padded vocabulary", "[core][autograd]") {
  const Tensor t = ids({2, 0, -1, 4, 3, 1}, {2, 3});
  CHECK(grad_check_error([t](const V& x) { return ops::cross_entropy_fused(x[0] * 1.0, t, 5); },
                         {randn({2, 3, 7}, 32)}) < kTol);
}

TEST_CASE("grad check: dropout with a fixed stream", "[core][autograd]") {
  CHECK(grad_check_error([](const V& x) { return ops::dropout(x[0], 0.3f, true, 99, 0); },
                         {randn({4, 9}, 27)}) < kTol);
}

TEST_CASE("grad check: views and conversions", "[core][autograd]") {
  CHECK(grad_check_error(
            [](const V& x) {
              return x[0].reshape({4, -1}) * x[0].reshape({4, 6});
            },
            {randn({2, 3, 4}, 28)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return x[0].transpose(0, 2).contiguous(); },
                         {randn({2, 3, 4}, 29)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return x[0].slice(1, 1, 3) * 2.0; },
                         {randn({2, 4, 3}, 30)}) < kTol);
  CHECK(grad_check_error([](const V& x) { return x[0].to(DType::F32).to(DType::F64); },
                         {randn({3, 3}, 31)}, 1e-3) < 1e-4);
}
