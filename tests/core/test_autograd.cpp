// Autograd engine behaviour: accumulation, no_grad, grad-ready hooks, graph freeing.
#include <catch2/catch.hpp>

#include "grad_check.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/autograd.hpp"

using namespace trident;
using trident::testing::randn;

TEST_CASE("gradients accumulate across backward passes (micro-batches)", "[core][autograd]") {
  Tensor w = randn({3, 4}, 1).requires_grad_();
  const Tensor x = randn({2, 4}, 2);
  ops::sum(ops::linear(x, w)).backward();
  const std::vector<double> once = w.grad().to_vector<double>();
  ops::sum(ops::linear(x, w)).backward();
  const std::vector<double> twice = w.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == Approx(2 * once[i]));
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("a tensor used twice gets the sum of both gradients", "[core][autograd]") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  ops::sum(a * a + a).backward();  // d/da = 2a + 1
  CHECK(a.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
}

namespace {
// y = x, recording the address of the gradient its backward receives.
Tensor identity_seeing(const Tensor& x, const void** seen) {
  Tensor y = x.detach().clone();
  autograd::record(y, "identity_seeing", {x}, [seen](const Tensor& g) {
    *seen = g.raw_data();
    return std::vector<Tensor>{g};
  });
  return y;
}
}  // namespace

TEST_CASE("a gradient an add hands to two nodes is shared, not copied", "[core][autograd]") {
  // s = u + v, u and v both outputs of other nodes: add's backward hands one gradient to both;
  // the engine passes that one buffer on (copy on write), where it used to copy it twice.
  Tensor p = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  const void* seen_u = nullptr;
  const void* seen_v = nullptr;
  const Tensor u = identity_seeing(p * 2.0, &seen_u);
  const Tensor v = identity_seeing(p * 5.0, &seen_v);
  const Tensor c = Tensor::from_vector(std::vector<double>{1, -1, 4}, {3});
  ops::sum((u + v) * c).backward();
  REQUIRE(seen_u != nullptr);
  CHECK(seen_u == seen_v);
  CHECK(p.grad().to_vector<double>() == std::vector<double>{7, -7, 28});
}

TEST_CASE("an in-place gradient write never reaches a gradient another node shares",
          "[core][autograd][residual_layer_norm]") {
  // r = x + d (fused with ln = layer_norm(r)), t = r + q, loss = sum(ln * cn) + sum(t * ct),
  // with q computed BEFORE r: t's backward hands one buffer to r and q; the layer norm's
  // backward (adding into r's gradient in place when it owns it) runs while q's node still
  // holds that buffer, so it must add out of place, or q's gradient would include it.
  for (const bool q_first : {true, false}) {
    Tensor x = randn({2, 16}, 41).to(DType::F64).requires_grad_();
    Tensor a = randn({2, 16}, 42).to(DType::F64).requires_grad_();
    Tensor b = randn({2, 16}, 43).to(DType::F64).requires_grad_();
    Tensor w = randn({16}, 44).to(DType::F64).requires_grad_();
    Tensor bias = randn({16}, 45).to(DType::F64).requires_grad_();
    const Tensor cn = randn({2, 16}, 46).to(DType::F64), ct = randn({2, 16}, 47).to(DType::F64);
    Tensor q;
    if (q_first) q = b * 3.0;
    const ops::ResidualLayerNorm r = ops::residual_layer_norm(x * 1.0, a * 2.0, w, bias, 1e-5);
    if (!q_first) q = b * 3.0;
    ops::sum(ops::sum(r.normed * cn) + ops::sum((r.residual + q) * ct)).backward();
    // d loss / d q = ct, so d loss / d b = 3 ct exactly, whatever the layer norm adds to r's.
    const std::vector<double> gb = b.grad().to_vector<double>(),
                              want = (ct * 3.0).to_vector<double>();
    INFO("q computed " << (q_first ? "before" : "after") << " the residual");
    CHECK(gb == want);
    // And r's gradient is ct plus the layer norm's: against the unfused ops.
    Tensor x2 = x.detach().clone().requires_grad_();
    const Tensor r2 = x2 * 1.0 + a.detach() * 2.0;
    ops::sum(ops::sum(ops::layer_norm(r2, w.detach(), bias.detach(), 1e-5) * cn) +
             ops::sum((r2 + q.detach()) * ct))
        .backward();
    const std::vector<double> gx = x.grad().to_vector<double>(),
                              gx2 = x2.grad().to_vector<double>();
    REQUIRE(gx.size() == gx2.size());
    for (size_t i = 0; i < gx.size(); ++i) CHECK(gx[i] == Approx(gx2[i]).epsilon(1e-12));
  }
}

TEST_CASE("no_grad records no history", "[core][autograd]") {
  Tensor w = randn({3}, 3).requires_grad_();
  {
    NoGradGuard guard;
    Tensor y = w * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  Tensor z = w * 2.0;
  CHECK(z.requires_grad());
  CHECK_THROWS_AS(Tensor::ones({2}).backward(), Error);
}

TEST_CASE("grad-ready hooks fire once per pass, last layer first", "[core][autograd]") {
  Tensor w1 = randn({4, 4}, 4).requires_grad_();
  Tensor w2 = randn({4, 4}, 5).requires_grad_();
  const Tensor x = randn({3, 4}, 6);
  // w1 is used twice: its hook must wait for both contributions. The gradients each hook must
  // see are those of the same pass on copies without hooks.
  const auto pass = [&x](const Tensor& a, const Tensor& b) {
    ops::sum(ops::linear(ops::linear(ops::linear(x, a), a), b)).backward();
  };
  std::vector<double> want1, want2;
  {
    Tensor a = w1.detach().clone(), b = w2.detach().clone();
    a.requires_grad_();
    b.requires_grad_();
    pass(a, b);
    want1 = a.grad().to_vector<double>();
    want2 = b.grad().to_vector<double>();
  }
  std::vector<std::string> order;
  w1.register_grad_ready_hook([&](Tensor& p) {
    REQUIRE(p.grad().defined());
    // The first pass's full gradient (both contributions), not the first contribution alone.
    if (order.size() == 1) CHECK(p.grad().to_vector<double>() == want1);
    order.push_back("w1");
  });
  w2.register_grad_ready_hook([&](Tensor& p) {
    REQUIRE(p.grad().defined());
    CHECK(p.grad().to_vector<double>() == want2);
    order.push_back("w2");
  });
  pass(w1, w2);
  CHECK(order == std::vector<std::string>{"w2", "w1"});
  ops::sum(ops::linear(x, w1)).backward();
  CHECK(order.size() == 3);
}

TEST_CASE("the graph is freed after backward", "[core][autograd]") {
  Tensor w = randn({3}, 7).requires_grad_();
  Tensor loss = ops::sum(w * w);
  loss.backward();
  CHECK_THROWS_WITH(loss.backward(), Catch::Contains("second time"));
}

TEST_CASE("views share storage and report shapes", "[core][tensor]") {
  Tensor a = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = a.transpose(0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  Tensor s = a.slice(1, 1, 3);
  CHECK(s.to_vector<float>() == std::vector<float>{1, 2, 4, 5});
  a.data<float>()[1] = 10;
  CHECK(s.to_vector<float>()[0] == 10);  // shared storage
  CHECK(a.reshape({3, -1}).shape() == Shape{3, 2});
  CHECK_THROWS_WITH(a.reshape({4, -1}), Catch::Contains("cannot reshape"));
  CHECK_THROWS_WITH(a.slice(1, 2, 5), Catch::Contains("out of range"));
}

TEST_CASE("shape errors name the shapes", "[core][errors]") {
  CHECK_THROWS_WITH(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({4})),
                    Catch::Contains("(2, 3)") && Catch::Contains("do not broadcast"));
  CHECK_THROWS_WITH(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                    Catch::Contains("inner dimensions"));
  CHECK_THROWS_WITH(ops::causal_self_attention(Tensor::zeros({1, 2, 12}), 3),
                    Catch::Contains("do not divide"));
  CHECK_THROWS_WITH(
      ops::embedding(Tensor::from_vector(std::vector<int32_t>{7}, {1}), Tensor::zeros({5, 2})),
      Catch::Contains("7"));
}

TEST_CASE("the caching allocator reuses blocks and tracks the peak", "[core][allocator]") {
  Allocator& alloc = allocator_for(Device::cpu());
  alloc.release_cache();
  alloc.reset_peak();
  const AllocatorStats before = alloc.stats();
  {
    Tensor a = Tensor::empty({1 << 18});  // 1 MiB
    Tensor b = Tensor::empty({1 << 18});
    CHECK(alloc.stats().in_use_bytes >= before.in_use_bytes + (2u << 20));
  }
  const AllocatorStats mid = alloc.stats();
  CHECK(mid.in_use_bytes == before.in_use_bytes);
  CHECK(mid.peak_bytes >= before.in_use_bytes + (2u << 20));
  for (int i = 0; i < 10; ++i) Tensor c = Tensor::empty({1 << 18});
  CHECK(alloc.stats().system_allocs == mid.system_allocs);  // served from the cache
}
