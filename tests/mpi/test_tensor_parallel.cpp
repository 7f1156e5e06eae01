// The tensor-parallel layers, each against the unsharded op on the whole tensors, per element,
// forward and backward, with tp = the world (2, 3 and 4 ranks): column-parallel linear (output
// columns split), row-parallel linear (input split, outputs summed), vocabulary-parallel
// embedding and cross entropy (vocabulary rows split). Every rank builds the same full tensors
// from a fixed formula and takes its shard, so a wrong shard offset, a missing or doubled
// all-reduce, or a gradient scaled by the group size shows up as a mismatched element.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "mpi_test_util.hpp"
#include "trident/core/autograd.hpp"
#include "trident/core/ops.hpp"
#include "trident/parallel/tensor_parallel.hpp"

using trident::NoGradGuard;
using trident::Tensor;
namespace ops = trident::ops;
namespace tp = trident::tp;

namespace {

// The same values on every rank.
std::vector<float> values(int64_t n, int seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = 0.5f * std::sin(1.37f * float(i) + 7.3f * float(seed));
  return v;
}
Tensor full(const trident::Shape& shape, int seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return Tensor::from_vector(values(n, seed), shape);
}
Tensor leaf(const trident::Shape& shape, int seed) {
  Tensor t = full(shape, seed);
  t.requires_grad_();
  return t;
}
void set(Tensor& param, const Tensor& value) {
  NoGradGuard no_grad;
  REQUIRE(param.shape() == value.shape());
  param.copy_(value.contiguous());
}

// Per element: |got - want| <= 1e-5 (1 + |want|).
void require_same(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what << ": got " << got.shape_str() << ", want " << want.shape_str());
  REQUIRE(got.shape() == want.shape());
  const std::vector<float> g = got.contiguous().to_vector<float>();
  const std::vector<float> w = want.contiguous().to_vector<float>();
  for (size_t i = 0; i < w.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::fabs(g[i] - w[i]) <= 1e-5 * (1.0 + std::fabs(w[i])));
  }
}

}  // namespace

TEST_CASE("tensor parallel: column-parallel linear equals the unsharded linear", "[mpi][tp]") {
  auto world = test_util::make_world();
  const int P = world->size(), r = world->rank();
  const int64_t in = 6, out = 4 * P, per = out / P;
  const Tensor W = full({out, in}, 1), b = full({out}, 2), G = full({3, 5, out}, 3);
  tp::ColumnParallelLinear layer(in, out, true, *world);
  set(layer.weight, W.slice(0, r * per, (r + 1) * per));
  set(layer.bias, b.slice(0, r * per, (r + 1) * per));
  Tensor x = leaf({3, 5, in}, 4);
  const Tensor y = layer.forward(x);
  // sum(y * G_shard) over all ranks is sum(y_full * G): each rank's gradient is its share.
  ops::sum(y * G.slice(2, r * per, (r + 1) * per)).backward();

  Tensor xr = leaf({3, 5, in}, 4), Wr = W.clone(), br = b.clone();
  Wr.requires_grad_();
  br.requires_grad_();
  const Tensor yr = ops::linear(xr, Wr, br);
  ops::sum(yr * G).backward();
  require_same(y, yr.slice(2, r * per, (r + 1) * per), "forward: this rank's output columns");
  require_same(x.grad(), xr.grad(), "dx: summed over the group (copy_to_tp_region backward)");
  require_same(layer.weight.grad(), Wr.grad().slice(0, r * per, (r + 1) * per), "dW shard");
  require_same(layer.bias.grad(), br.grad().slice(0, r * per, (r + 1) * per), "db shard");
}

TEST_CASE("tensor parallel: row-parallel linear equals the unsharded linear", "[mpi][tp]") {
  auto world = test_util::make_world();
  const int P = world->size(), r = world->rank();
  const int64_t in = 3 * P, out = 5, per = in / P;
  const Tensor W = full({out, in}, 11), b = full({out}, 12), G = full({4, out}, 13);
  tp::RowParallelLinear layer(in, out, true, *world);
  set(layer.weight, W.slice(1, r * per, (r + 1) * per));
  set(layer.bias, b);
  Tensor x = full({4, in}, 14).slice(1, r * per, (r + 1) * per).contiguous();
  x.requires_grad_();
  const Tensor y = layer.forward(x);
  ops::sum(y * G).backward();

  Tensor xr = leaf({4, in}, 14), Wr = W.clone(), br = b.clone();
  Wr.requires_grad_();
  br.requires_grad_();
  ops::sum(ops::linear(xr, Wr, br) * G).backward();
  require_same(y, ops::linear(xr, Wr, br).detach(), "forward: the reduced output");
  require_same(x.grad(), xr.grad().slice(1, r * per, (r + 1) * per), "dx shard");
  require_same(layer.weight.grad(), Wr.grad().slice(1, r * per, (r + 1) * per), "dW shard");
  require_same(layer.bias.grad(), br.grad(), "db (replicated, not summed over ranks)");
}

TEST_CASE("tensor parallel: vocabulary-parallel embedding equals the unsharded embedding",
          "[mpi][tp]") {
  auto world = test_util::make_world();
  const int P = world->size(), r = world->rank();
  const int64_t vocab = 3 * P, dim = 5, per = vocab / P;
  const Tensor E = full({vocab, dim}, 21);
  tp::VocabParallelEmbedding layer(vocab, dim, *world);
  CHECK(layer.vocab_start() == r * per);
  CHECK(layer.vocab_end() == (r + 1) * per);
  set(layer.weight, E.slice(0, r * per, (r + 1) * per));
  // Every id of every shard, some repeated.
  std::vector<int32_t> id_values;
  for (int64_t i = 0; i < 2 * vocab + 3; ++i)
    id_values.push_back(static_cast<int32_t>((i * 7) % vocab));
  const Tensor ids = Tensor::from_vector(id_values, {1, static_cast<int64_t>(id_values.size())});
  const Tensor G = full({1, static_cast<int64_t>(id_values.size()), dim}, 22);
  const Tensor y = layer.forward(ids);
  ops::sum(y * G).backward();

  Tensor Er = E.clone();
  Er.requires_grad_();
  const Tensor yr = ops::embedding(ids, Er);
  ops::sum(yr * G).backward();
  require_same(y, yr, "forward: the full lookup on every rank");
  require_same(layer.weight.grad(), Er.grad().slice(0, r * per, (r + 1) * per), "dE shard");
  // An id outside the whole vocabulary is an error, not a zero row.
  const Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, static_cast<int32_t>(vocab)}, {2});
  CHECK_THROWS_WITH(layer.forward(bad), Catch::Contains("id " + std::to_string(vocab)));
}

TEST_CASE("tensor parallel: vocabulary-parallel cross entropy equals the unsharded loss",
          "[mpi][tp]") {
  auto world = test_util::make_world();
  const int P = world->size(), r = world->rank();
  const int64_t vocab = 4 * P, n = 7, per = vocab / P;
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 5 + 1) % vocab));
  t[3] = -1;  // ignored
  const Tensor targets = Tensor::from_vector(t, {n});
  Tensor logits = (full({n, vocab}, 31) * 4.0).slice(1, r * per, (r + 1) * per).contiguous();
  logits.requires_grad_();
  const Tensor loss = tp::vocab_parallel_cross_entropy(logits, targets, r * per, *world);
  loss.backward();

  Tensor lr = full({n, vocab}, 31) * 4.0;
  lr.requires_grad_();
  const Tensor loss_r = ops::cross_entropy(lr, targets);
  loss_r.backward();
  require_same(loss, loss_r, "mean loss");
  require_same(logits.grad(), lr.grad().slice(1, r * per, (r + 1) * per), "dlogits shard");
}
