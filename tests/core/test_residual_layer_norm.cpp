// ops::residual_layer_norm against the unfused add + layer_norm it replaces: values and every
// gradient bitwise equal on the CPU in f32 and f64, both when the residual has a later consumer
// (its gradient is then accumulated in place by the fused backward, autograd's
// pending_input_grad) and when the layer norm is its only consumer; bf16 within rounding.
#include <catch2/catch.hpp>
#include <cstring>

#include "grad_check.hpp"

using namespace trident;
using trident::testing::randn;

namespace {

struct Grads {
  std::vector<double> residual, normed, x, a, w, b;
};

// x and a leaf `a` feeding delta = a * 3 (so delta comes from another op, as attention's output
// does in a block); loss = sum(residual * cr) + sum(normed * cn), or sum(normed * cn) only.
Grads run(bool fused, bool residual_used, DType t) {
  const Shape s{2, 3, 40};
  Tensor x = randn(s, 31).to(t).requires_grad_();
  Tensor a = randn(s, 32).to(t).requires_grad_();
  Tensor w = ops::add_scalar(randn({40}, 33) * 0.3, 1.0).to(t).requires_grad_();
  Tensor b = randn({40}, 34).to(t).requires_grad_();
  const Tensor cr = randn(s, 35).to(t), cn = randn(s, 36).to(t);
  const Tensor delta = a * 3.0;
  Tensor residual, normed;
  if (fused) {
    const ops::ResidualLayerNorm r = ops::residual_layer_norm(x, delta, w, b, 1e-5);
    residual = r.residual;
    normed = r.normed;
  } else {
    residual = x + delta;
    normed = ops::layer_norm(residual, w, b, 1e-5);
  }
  Tensor loss = ops::sum(normed * cn);
  if (residual_used) loss = loss + ops::sum(residual * cr);
  loss.backward();
  return {residual.to_vector<double>(), normed.to_vector<double>(),   x.grad().to_vector<double>(),
          a.grad().to_vector<double>(), w.grad().to_vector<double>(), b.grad().to_vector<double>()};
}

void check_equal(const std::vector<double>& got, const std::vector<double>& want, double rtol) {
  REQUIRE(got.size() == want.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  INFO("largest difference " << worst << " of values up to " << scale);
  CHECK(worst <= rtol * scale);
}

}  // namespace

TEST_CASE("residual_layer_norm equals add then layer_norm, values and gradients",
          "[core][residual_layer_norm]") {
  for (const DType t : {DType::F32, DType::F64, DType::BF16}) {
    // bf16: the fused backward rounds dres + dln once, the unfused path twice.
    const double rtol = t == DType::BF16 ? 2e-2 : t == DType::F32 ? 1e-6 : 1e-14;
    for (const bool residual_used : {true, false}) {
      INFO(dtype_name(t) << (residual_used ? ", residual used" : ", only the norm used"));
      const Grads f = run(true, residual_used, t), u = run(false, residual_used, t);
      check_equal(f.residual, u.residual, 0.0);
      check_equal(f.normed, u.normed, 0.0);
      check_equal(f.x, u.x, rtol);
      check_equal(f.a, u.a, rtol);
      check_equal(f.w, u.w, rtol);
      check_equal(f.b, u.b, rtol);
    }
  }
}

TEST_CASE("residual_layer_norm rejects mismatched operands", "[core][residual_layer_norm]") {
  const Tensor x = randn({2, 8}, 1), w = randn({8}, 3), b = randn({8}, 4);
  CHECK_NOTHROW(ops::residual_layer_norm(x, randn({2, 8}, 2), w, b));
  CHECK_THROWS_AS(ops::residual_layer_norm(x, randn({2, 4}, 2), w, b), Error);
  CHECK_THROWS_AS(ops::residual_layer_norm(x, randn({2, 8}, 2).to(DType::F32), w, b), Error);
  CHECK_THROWS_AS(ops::residual_layer_norm(x, randn({2, 8}, 2), randn({4}, 3), b), Error);
}
