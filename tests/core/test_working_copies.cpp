// trident::WorkingCopies: the step's bf16 copies of f32 master parameters. The first scope learns
// which parameters are asked for; every later scope casts all of them at once, and the copy is
// bitwise the per-call cast of the master as it is when the scope opens.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "trident/core/ops.hpp"
#include "trident/core/tensor.hpp"
#include "trident/core/working_copies.hpp"

using namespace trident;

namespace {
Tensor ramp(const Shape& shape, float scale) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  // Values that bf16 must round (not representable in 8 significant bits).
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * (0.1234567f + 0.0137f * float(i));
  return Tensor::from_vector(v, shape);
}
std::vector<float> widened(const Tensor& bf16) {
  REQUIRE(bf16.dtype() == DType::BF16);
  return bf16.to(DType::F32).to_vector<float>();  // exact: equal floats are equal bf16 bits
}
}  // namespace

TEST_CASE("working copies: one cast per scope, bitwise the per-call cast", "[working_copies]") {
  Tensor w = ramp({5, 7}, 1.0f), b = ramp({7}, -3.0f), other = ramp({3, 3}, 2.0f);
  WorkingCopies copies;
  CHECK_FALSE(WorkingCopies::find(w, DType::BF16).defined());  // no scope open
  {
    const WorkingCopies::Scope learn(copies);
    CHECK_FALSE(WorkingCopies::find(w, DType::BF16).defined());  // learning: cast per call
    CHECK_FALSE(WorkingCopies::find(b, DType::BF16).defined());
    CHECK_FALSE(WorkingCopies::find(w, DType::BF16).defined());  // asked twice, kept once
  }
  CHECK(copies.count() == 2);
  CHECK(copies.elements() == 40 + 8);  // 35 and 7 elements, each copy 8-element aligned
  CHECK(copies.refreshes() == 0);
  {
    const WorkingCopies::Scope step(copies);
    CHECK(copies.refreshes() == 1);
    const Tensor cw = WorkingCopies::find(w, DType::BF16);
    const Tensor cb = WorkingCopies::find(b, DType::BF16);
    REQUIRE(cw.defined());
    REQUIRE(cb.defined());
    CHECK(cw.shape() == w.shape());
    CHECK(widened(cw) == widened(w.to(DType::BF16)));
    CHECK(widened(cb) == widened(b.to(DType::BF16)));
    CHECK_FALSE(WorkingCopies::find(other, DType::BF16).defined());             // never learned
    CHECK_FALSE(WorkingCopies::find(w, DType::F16).defined());                  // bf16 copies only
    CHECK_FALSE(WorkingCopies::find(w.slice(0, 1, 3), DType::BF16).defined());  // a view
  }
  CHECK_FALSE(WorkingCopies::find(w, DType::BF16).defined());  // closed
  // The optimizer changes the masters between steps: the next scope casts them again.
  w.copy_(ramp({5, 7}, 0.5f));
  {
    const WorkingCopies::Scope step(copies);
    CHECK(copies.refreshes() == 2);
    CHECK(widened(WorkingCopies::find(w, DType::BF16)) == widened(w.to(DType::BF16)));
  }
}

namespace {
std::vector<uint32_t> f32_bits(const Tensor& t) {
  REQUIRE(t.dtype() == DType::F32);
  const std::vector<float> v = t.to_vector<float>();
  std::vector<uint32_t> u(v.size());
  std::memcpy(u.data(), v.data(), v.size() * sizeof(float));
  return u;
}
}  // namespace

TEST_CASE("a bf16 cast's backward adds into its f32 leaf's gradient, bitwise cast then add",
          "[working_copies][autograd]") {
  // The to_dtype node of Tensor::to and of WorkingCopies::to: once the leaf holds a gradient,
  // the backward converts and adds into it in one pass (Backend::accumulate_converted) instead
  // of returning the f32 cast for the engine to add; the bits are the same, and the leaf's hook
  // still fires once per backward.
  Tensor p = ramp({37}, 1.0f);
  p.requires_grad_();
  int hooks = 0;
  p.register_grad_ready_hook([&hooks](const Tensor&) { ++hooks; });
  // Gradients of about 1e-3 next to ~1: the f32 sums round.
  const Tensor g1 = ramp({37}, 0.01f).to(DType::BF16), g2 = ramp({37}, -0.003f).to(DType::BF16);
  const Tensor g3 = ramp({37}, 0.0007f).to(DType::BF16);

  p.to(DType::BF16).backward(g1);  // no gradient yet: the engine takes the cast
  REQUIRE(p.grad().defined());
  CHECK(f32_bits(p.grad()) == f32_bits(g1.to(DType::F32)));
  CHECK(hooks == 1);
  const Tensor before = p.grad().clone();
  const void* storage = p.grad().raw_data();

  p.to(DType::BF16).backward(g2);  // Tensor::to: into the held gradient, in place
  const Tensor want2 = ops::add(before, g2.to(DType::F32));
  CHECK(p.grad().raw_data() == storage);
  CHECK(f32_bits(p.grad()) == f32_bits(want2));
  CHECK(f32_bits(p.grad()) != f32_bits(before));
  CHECK(hooks == 2);

  WorkingCopies copies;
  {
    const WorkingCopies::Scope learn(copies);
    CHECK_FALSE(WorkingCopies::find(p, DType::BF16).defined());
  }
  {
    const WorkingCopies::Scope step(copies);
    const Tensor copy = WorkingCopies::to(p, DType::BF16);
    REQUIRE(copy.grad_fn() != nullptr);
    copy.backward(g3);  // WorkingCopies::to: the same node
  }
  CHECK(f32_bits(p.grad()) == f32_bits(ops::add(want2, g3.to(DType::F32))));
  CHECK(hooks == 3);

  // Two casts of a fresh leaf in one pass: the second adds into what the first left.
  Tensor q = ramp({37}, 2.0f);
  q.requires_grad_();
  const Tensor a = ramp({37}, 0.5f).to(DType::BF16), b = ramp({37}, -0.0011f).to(DType::BF16);
  ops::sum(q.to(DType::BF16) * a + q.to(DType::BF16) * b).backward();
  REQUIRE(q.grad().defined());
  CHECK(f32_bits(q.grad()) == f32_bits(ops::add(a.to(DType::F32), b.to(DType::F32))));
}
