// trident::WorkingCopies: the step's bf16 copies of f32 master parameters. The first scope learns
// which parameters are asked for; every later scope casts all of them at once, and the copy is
// bitwise the per-call cast of the master as it is when the scope opens.
#include <catch2/catch.hpp>
#include <vector>

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
