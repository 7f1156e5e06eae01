// The optimizer's one-launch multi-tensor updates (Backend::optimizer_table_write and the
// *_update_table entries): several tensors of odd sizes (empty, 3 elements, across chunk
// boundaries, one not 16-byte aligned), each with its own weight decay, in ONE kernel launch,
// against the CPU kernels tensor by tensor; the clip factor folded into the update bitwise equal
// to scaling the gradients first and updating with them, on the host path and on the device
// path (StepScalars); and optim::AdamW / SGD writing their table once per parameter set.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "gpu_test_util.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/kernels/cpu/optimizer.hpp"

#ifdef TRIDENT_CUDA_EMULATION
#include "trident_cuda_emu.hpp"
#endif

namespace trident::gpu_test {
namespace {

// Kernel launches executed so far (-1 where nothing counts them: a real GPU).
long long launches() {
#ifdef TRIDENT_CUDA_EMULATION
  backend_for(gpu()).synchronize();
  return cuemu::launches_executed();
#else
  return -1;
#endif
}

// One tensor's values: param, grad, state1 (m or momentum buffer), state2 (v).
struct Host {
  std::vector<float> p, g, s1, s2;
};

// The test set: sizes with an empty tensor, tails, and two chunk boundaries (16384 a block).
const std::vector<int64_t> kSizes = {1000, 3, 0, 70001, 16384 * 2 + 7, 5, 16384};
const std::vector<float> kDecay = {0.1f, 0.0f, 0.1f, 0.05f, 0.1f, 0.0f, 0.2f};

std::vector<Host> make_host(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Host> hs;
  for (const int64_t n : kSizes) {
    Host h;
    h.p = normal(static_cast<size_t>(n), rng);
    h.g = normal(static_cast<size_t>(n), rng, 0.1f);
    h.s1 = normal(static_cast<size_t>(n), rng, 0.05f);
    h.s2 = uniform(static_cast<size_t>(n), rng, 0.0f, 0.01f);
    hs.push_back(std::move(h));
  }
  return hs;
}

// The tensors on the GPU. Tensor 3 sits one float past a 16-byte boundary (the scalar path).
struct Device4 {
  std::vector<Tensor> keep;
  std::vector<OptimizerTensor> tensors;
  std::vector<int64_t> shift;
};

Device4 upload_all(const std::vector<Host>& hs) {
  Device4 d;
  for (size_t i = 0; i < hs.size(); ++i) {
    const int64_t s = i == 3 ? 1 : 0;
    const auto up = [&](const std::vector<float>& v) {
      std::vector<float> padded(static_cast<size_t>(s), 0.0f);
      padded.insert(padded.end(), v.begin(), v.end());
      if (padded.empty()) padded.push_back(0.0f);
      d.keep.push_back(Tensor::from_vector(padded, {static_cast<int64_t>(padded.size())}, gpu()));
      return d.keep.back().data<float>() + s;
    };
    OptimizerTensor t;
    t.param = up(hs[i].p);
    t.grad = up(hs[i].g);
    t.state1 = up(hs[i].s1);
    t.state2 = up(hs[i].s2);
    t.n = kSizes[i];
    t.weight_decay = kDecay[i];
    d.tensors.push_back(t);
    d.shift.push_back(s);
  }
  return d;
}

std::vector<float> read(const Tensor& t, int64_t shift, int64_t n) {
  const std::vector<float> all = t.to_vector<float>();
  return std::vector<float>(all.begin() + shift, all.begin() + shift + n);
}

// Element by element: |got - want| <= 1e-6 (|want| + max |want|). The CPU kernels may contract
// products into FMAs where the device code does not, a few ulps apart; elements near zero (m is
// a difference of nearby values) get the tensor's scale as their floor.
void expect_near(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (const float w : want) scale = std::max(scale, std::abs(double(w)));
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(double(got[i]) - want[i]) <= 1e-6 * (std::abs(double(want[i])) + scale))) ++bad;
  }
  INFO(what << ": " << bad << " of " << got.size() << " elements off");
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("multi-tensor AdamW and SGD: every tensor in one launch, each as the CPU kernel",
          "[optimizer]") {
  Backend& be = backend_for(gpu());
  const int count = static_cast<int>(kSizes.size());
  for (const bool adam : {true, false}) {
    for (const float scale : {1.0f, 0.37f}) {
      INFO((adam ? "adamw" : "sgd") << ", grad_scale " << scale);
      const std::vector<Host> hs = make_host(test_seed() + (adam ? 1 : 2));
      Device4 d = upload_all(hs);
      for (auto& t : d.tensors) t.first_step = false;
      Tensor table =
          Tensor::empty({static_cast<int64_t>(be.optimizer_table_bytes(count))}, DType::U8, gpu());
      const int64_t units = be.optimizer_table_write(table.raw_data(), d.tensors.data(), count);
      // 1000 -> 1 chunk, 3 -> 1, 0 -> 0, 70001 -> 5, 32775 -> 3, 5 -> 1, 16384 -> 1.
      CHECK(units == 12);
      const long long before = launches();
      if (adam) {
        be.adamw_update_table(table.raw_data(), count, units, 3e-3f, 0.9f, 0.95f, 1e-8f, 7, scale);
      } else {
        be.sgd_update_table(table.raw_data(), count, units, 0.05f, 0.9f, 0.1f, true, scale);
      }
      const long long after = launches();
      if (before >= 0) CHECK(after - before == 1);
      // The CPU kernels, tensor by tensor.
      for (size_t i = 0; i < hs.size(); ++i) {
        Host c = hs[i];
        const int64_t n = kSizes[i];
        if (n == 0) continue;  // nothing to update (and no buffers to pass the CPU kernel)
        if (adam) {
          kernels::cpu::adamw_update(c.p.data(), c.g.data(), c.s1.data(), c.s2.data(), n, 3e-3f,
                                     0.9f, 0.95f, 1e-8f, kDecay[i], 7, scale);
        } else {
          kernels::cpu::sgd_update(c.p.data(), c.g.data(), c.s1.data(), n, 0.05f, 0.9f, 0.1f,
                                   kDecay[i], true, false, scale);
        }
        INFO("tensor " << i << " of " << n << " elements");
        const int64_t s = d.shift[i];
        expect_near(read(d.keep[4 * i], s, n), c.p, "param");
        expect_near(read(d.keep[4 * i + 2], s, n), c.s1, "state1");
        if (adam) expect_near(read(d.keep[4 * i + 3], s, n), c.s2, "state2");
        CHECK(read(d.keep[4 * i + 1], s, n) == hs[i].g);  // the gradient is read, not scaled
      }
    }
  }
}

TEST_CASE("the clip factor folded into the update is bitwise a scaling pass, then the update",
          "[optimizer]") {
  Backend& be = backend_for(gpu());
  const int count = static_cast<int>(kSizes.size());
  const double coef = 1.0 / (7.3 + 1e-6);  // as the trainer computes it: max_norm / (norm + eps)
  for (const bool adam : {true, false}) {
    INFO((adam ? "adamw" : "sgd"));
    const std::vector<Host> hs = make_host(test_seed() + 3);
    Device4 a = upload_all(hs), b = upload_all(hs);
    const auto table_of = [&](Device4& d, Tensor& table) {
      table =
          Tensor::empty({static_cast<int64_t>(be.optimizer_table_bytes(count))}, DType::U8, gpu());
      return be.optimizer_table_write(table.raw_data(), d.tensors.data(), count);
    };
    Tensor ta, tb;
    const int64_t ua = table_of(a, ta), ub = table_of(b, tb);
    // a: the old way, the gradients scaled in place (Backend::scale), then the update.
    for (const auto& t : a.tensors) {
      be.scale(DType::F32, const_cast<float*>(t.grad), t.grad, coef, t.n);
    }
    if (adam) {
      be.adamw_update_table(ta.raw_data(), count, ua, 3e-3f, 0.9f, 0.95f, 1e-8f, 3, 1.0f);
      be.adamw_update_table(tb.raw_data(), count, ub, 3e-3f, 0.9f, 0.95f, 1e-8f, 3,
                            static_cast<float>(coef));
    } else {
      be.sgd_update_table(ta.raw_data(), count, ua, 0.05f, 0.9f, 0.0f, false, 1.0f);
      be.sgd_update_table(tb.raw_data(), count, ub, 0.05f, 0.9f, 0.0f, false,
                          static_cast<float>(coef));
    }
    for (size_t i = 0; i < 4 * hs.size(); ++i) {
      if (i % 4 == 1) continue;  // the gradients: a's are scaled, b's are not
      INFO("buffer " << i);
      CHECK(a.keep[i].to_vector<float>() == b.keep[i].to_vector<float>());
    }
  }
}

TEST_CASE(
    "the device step's clip factor (StepScalars) folded into the update is bitwise the host's",
    "[optimizer]") {
  Backend& be = backend_for(gpu());
  const int count = static_cast<int>(kSizes.size());
  const std::vector<Host> hs = make_host(test_seed() + 4);
  Device4 host = upload_all(hs), dev = upload_all(hs);
  Tensor th =
      Tensor::empty({static_cast<int64_t>(be.optimizer_table_bytes(count))}, DType::U8, gpu());
  Tensor td =
      Tensor::empty({static_cast<int64_t>(be.optimizer_table_bytes(count))}, DType::U8, gpu());
  const int64_t uh = be.optimizer_table_write(th.raw_data(), host.tensors.data(), count);
  const int64_t ud = be.optimizer_table_write(td.raw_data(), dev.tensors.data(), count);
  // The device block after one finished step: the norm sqrt(53.29) = 7.3 clipped to 1, lr from
  // the table, the optimizer's 3rd update.
  Tensor scalars =
      Tensor::empty({static_cast<int64_t>((be.step_scalars_bytes() + 7) / 8)}, DType::I64, gpu());
  be.step_scalars_init(scalars.raw_data(), 0, 2);
  const Tensor losses = Tensor::from_vector(std::vector<float>{2.5f}, {1}, gpu());
  const Tensor sq = Tensor::from_vector(std::vector<double>{7.3 * 7.3}, {1}, gpu());
  const Tensor lrs = Tensor::from_vector(std::vector<float>{3e-3f}, {1}, gpu());
  Tensor window = Tensor::zeros({3}, DType::F64, gpu());
  double* w = window.data<double>();
  be.train_step_finish(scalars.raw_data(), losses.data<float>(), 1, nullptr, 1, sq.data<double>(),
                       1.0f, false, 0, lrs.data<float>(), 1, w, w + 1, w + 2, 1);
  be.adamw_update_table_step(td.raw_data(), count, ud, 0.9f, 0.95f, 1e-8f, scalars.raw_data());
  const double norm = std::sqrt(7.3 * 7.3);
  be.adamw_update_table(th.raw_data(), count, uh, 3e-3f, 0.9f, 0.95f, 1e-8f, 3,
                        static_cast<float>(1.0 / (norm + 1e-6)));
  for (size_t i = 0; i < 4 * hs.size(); ++i) {
    INFO("buffer " << i);
    CHECK(host.keep[i].to_vector<float>() == dev.keep[i].to_vector<float>());
  }
}

TEST_CASE("the device step's loss over ranks: the summed micro-batch losses, divided by the ranks",
          "[optimizer]") {
  Backend& be = backend_for(gpu());
  Tensor scalars =
      Tensor::empty({static_cast<int64_t>((be.step_scalars_bytes() + 7) / 8)}, DType::I64, gpu());
  be.step_scalars_init(scalars.raw_data(), 0, 0);
  // Three micro-batches: the sum in double, in order (0.1f + 0.2f) + 0.7f, as the host adds them.
  const std::vector<float> ls{0.1f, 0.2f, 0.7f};
  const Tensor losses = Tensor::from_vector(ls, {3}, gpu());
  Tensor sum = Tensor::zeros({1}, DType::F64, gpu());
  be.train_step_loss_sum(losses.data<float>(), 3, sum.data<double>());
  const double local = (0.0 + double{ls[0]} + double{ls[1]}) + double{ls[2]};
  CHECK(sum.to_vector<double>()[0] == local);
  // What a data-parallel all-reduce over 4 ranks would leave: 4 sums; the loss is their mean.
  const Tensor reduced = Tensor::from_vector(std::vector<double>{10.5}, {1}, gpu());
  const Tensor sq = Tensor::from_vector(std::vector<double>{4.0}, {1}, gpu());
  const Tensor lrs = Tensor::from_vector(std::vector<float>{1e-3f}, {1}, gpu());
  Tensor window = Tensor::zeros({3}, DType::F64, gpu());
  double* w = window.data<double>();
  be.train_step_finish(scalars.raw_data(), losses.data<float>(), 3, reduced.data<double>(), 4,
                       sq.data<double>(), 0.0f, false, 0, lrs.data<float>(), 1, w, w + 1, w + 2, 1);
  const std::vector<double> got = window.to_vector<double>();
  CHECK(got[0] == 10.5 / 4);  // not the local micro-batch sum
  CHECK(got[1] == 2.0);
  CHECK(got[2] == 0.0);
  // Without a reduced sum (one rank) the micro-batch losses are summed, as before.
  be.train_step_finish(scalars.raw_data(), losses.data<float>(), 3, nullptr, 1, sq.data<double>(),
                       0.0f, false, 0, lrs.data<float>(), 1, w, w + 1, w + 2, 1);
  CHECK(window.to_vector<double>()[0] == local);
}

TEST_CASE("optim::AdamW and SGD write their table once per parameter set and launch once a step",
          "[optimizer]") {
  std::mt19937_64 rng(test_seed() + 5);
  std::vector<Tensor> params;
  for (const int64_t n : {int64_t{7}, int64_t{300}, int64_t{5}}) {
    Tensor p = Tensor::from_vector(normal(static_cast<size_t>(n), rng), {n}, gpu());
    p.set_grad(Tensor::from_vector(normal(static_cast<size_t>(n), rng), {n}, gpu()));
    params.push_back(p);
  }
  // Two groups (weight decay and none): still one table and one launch.
  std::vector<optim::ParamGroup> groups{{{params[0], params[1]}, 0.1f}, {{params[2]}, 0.0f}};
  optim::AdamW adam(groups, optim::AdamWOptions{});
  optim::SGD sgd(groups, optim::SGDOptions{0.1f, 0.9f, 0.0f, false});
  for (int step = 0; step < 3; ++step) {
    const long long before = launches();
    adam.step();
    const long long mid = launches();
    sgd.step();
    const long long after = launches();
    if (before >= 0) {
      CHECK(mid - before == 1);
      CHECK(after - mid == 1);
    }
  }
  REQUIRE(adam.tables().size() == 1);
  CHECK(adam.tables()[0].count() == 3);
  CHECK(adam.tables()[0].writes() == 1);
  // SGD's momentum buffers are initialised at the first step: written again at the second.
  REQUIRE(sgd.tables().size() == 1);
  CHECK(sgd.tables()[0].writes() == 2);
  // A new gradient tensor changes the set: written again.
  params[1].set_grad(Tensor::zeros({300}, DType::F32, gpu()));
  adam.step();
  CHECK(adam.tables()[0].writes() == 2);
}

}  // namespace trident::gpu_test
