// The layout planner's cost model: memory against a hand calculation, the pipeline bubble,
// alpha-beta collectives, feasibility reasons and the ranking.
#include <catch2/catch.hpp>
#include <string>

#include "trident/core/error.hpp"
#include "trident/planner/layout_planner.hpp"

using namespace trident::planner;

namespace {

// The tiny preset of gpt_config.hpp (0.83M parameters).
ModelShape tiny() {
  ModelShape m;
  m.name = "tiny";
  m.vocab = 256, m.context = 64, m.layers = 4, m.heads = 4, m.width = 128;
  return m;
}

// Prices only one kind of kernel (1 ms a call), so stages can be made exactly equal.
class OnlyKernel : public KernelCostModel {
 public:
  explicit OnlyKernel(Kernel k) : k_(k) {}
  double seconds(const KernelCall& c) const override { return c.kernel == k_ ? 1e-3 : 0.0; }

 private:
  Kernel k_;
};

Hardware free_links(Hardware h) {
  h.intra = h.inter = Link{0.0, 1e30, 1e30};
  return h;
}

const Prediction* find(const std::vector<Prediction>& ps, int dp, int tp, int pp, int64_t m = -1,
                       int zero = -1) {
  for (const auto& p : ps) {
    const Layout& l = p.layout;
    if (l.dp == dp && l.tp == tp && l.pp == pp && (m < 0 || l.micro_batches == m) &&
        (zero < 0 || l.zero == (zero == 1))) {
      return &p;
    }
  }
  return nullptr;
}

}  // namespace

TEST_CASE("parameter count matches GPTConfig's and splits over stages and tp ranks") {
  const ModelShape m = tiny();
  // V C + block C + L (12 C^2 + 13 C) + 2 C, as models/gpt_config.cpp (834304 for tiny).
  CHECK(m.num_parameters() == 834304);
  CHECK(stage_parameters(m, 1, 1, 0) == 834304);
  // pp 2: both stages hold the tied embedding (256 x 128); the first wpe, the last ln_f.
  const int64_t block = 12 * 128 * 128 + 13 * 128;
  CHECK(stage_parameters(m, 1, 2, 0) == 256 * 128 + 64 * 128 + 2 * block);
  CHECK(stage_parameters(m, 1, 2, 1) == 256 * 128 + 2 * block + 2 * 128);
  // tp 2 halves the matrices, the vocabulary rows and the column-parallel biases; LayerNorms
  // and row-parallel biases (6C a block) are replicated.
  const int64_t block_tp2 = (12 * 128 * 128 + 7 * 128) / 2 + 6 * 128;
  CHECK(stage_parameters(m, 2, 1, 0) == 128 * 128 + 64 * 128 + 4 * block_tp2 + 2 * 128);
}

TEST_CASE("memory of the tiny model, one rank, fp32, against a hand calculation") {
  const ModelShape m = tiny();
  TrainingSetup s;
  s.global_batch = 16, s.seq_len = 64, s.world_size = 1, s.precision = Precision::FP32;
  const Hardware hw = Hardware::preset("cpu");
  const Layout l{1, 1, 1, 1, 16, false};
  const MemoryEstimate e = predict_memory(m, hw, s, l);
  const double P = 834304;
  CHECK(e.weights == Approx(4 * P));
  CHECK(e.grads == Approx(4 * P));
  CHECK(e.optimizer == Approx(8 * P));  // Adam m and v
  // Per token per layer: (4C + 12C + aT) fp32 + 16 bytes of LayerNorm statistics
  //   = (512 + 1536 + 256) * 4 + 16 = 9232 bytes; 1024 tokens x 4 layers.
  const double saved = 9232.0 * 1024 * 4;
  // Last stage: ln_f input and output and the logits (2C + V) fp32 a token.
  const double head = 1024.0 * (256 + 256) * 4;
  // During backward: one layer's gradients (2C + 12C + aT) fp32 a token, the logits' gradient,
  // and the largest weight gradient (4C^2 > V C) before it joins its bucket.
  const double transient = 1024.0 * (1792 * 4 + 256 * 4) + 4.0 * 1024 * 256 + 4.0 * 4 * 128 * 128;
  CHECK(e.activations == Approx(saved + head + transient));
  CHECK(e.total() == Approx(16 * P + saved + head + transient));
  CHECK(e.in_flight == 1);

  SECTION("ZeRO-1 over dp 2 halves Adam state and adds a gradient shard") {
    TrainingSetup s2 = s;
    s2.world_size = 2;
    const MemoryEstimate z = predict_memory(m, hw, s2, Layout{2, 1, 1, 1, 8, true});
    CHECK(z.optimizer == Approx(4 * P));
    CHECK(z.grads == Approx(4 * P + 2 * P));
    CHECK(z.activations < e.activations);  // half the micro-batch
  }
  SECTION("bf16 keeps a 2-byte working copy and 12 bytes of fp32 master, m, v") {
    TrainingSetup b = s;
    b.precision = Precision::BF16;
    const MemoryEstimate e2 = predict_memory(m, Hardware::preset("h100"), b, l);
    CHECK(e2.weights == Approx(2 * P));
    CHECK(e2.optimizer == Approx(12 * P));
    CHECK(e2.reserved == Approx(2e9));
  }
}

TEST_CASE("pipeline: bubble (p-1)/(m+p-1), 1F1B holds p micro-batches where GPipe holds m") {
  CHECK(bubble_fraction(1, 8) == 0.0);
  CHECK(bubble_fraction(4, 8) == Approx(3.0 / 11.0));
  CHECK(bubble_fraction(2, 1) == Approx(0.5));
  CHECK(in_flight_micro_batches("1f1b", 4, 0, 8) == 4);
  CHECK(in_flight_micro_batches("1f1b", 4, 3, 8) == 1);
  CHECK(in_flight_micro_batches("1f1b", 4, 0, 2) == 2);
  CHECK(in_flight_micro_batches("gpipe", 4, 3, 8) == 8);
  CHECK(in_flight_micro_batches("1f1b", 1, 0, 8) == 1);

  // Only attention is priced (one call forward, one backward per layer), links are free: the
  // stages are equal and the step is (m + p - 1) micro-batch times.
  ModelShape m = tiny();
  m.layers = 8;
  TrainingSetup s;
  s.global_batch = 16, s.seq_len = 64, s.world_size = 4, s.precision = Precision::FP32;
  s.grad_clip = false;
  Hardware hw = free_links(Hardware::preset("cpu"));
  hw.cores = 0;
  const OnlyKernel attention(Kernel::Attention);
  for (int64_t mb : {1, 4, 8, 16}) {
    const Prediction p = predict(m, hw, s, Layout{1, 1, 4, mb, 16 / mb, false}, attention);
    const double per_mb = 2 * 2 * 1e-3;  // 2 layers a stage, forward + backward
    CHECK(p.time.step == Approx((mb + 3) * per_mb));
    CHECK(p.time.bubble / p.time.step == Approx(bubble_fraction(4, mb)));
    CHECK(p.time.compute == Approx(mb * per_mb));
  }
  TrainingSetup g = s;
  g.schedule = "gpipe";
  const Layout l{1, 1, 4, 8, 2, false};
  const Prediction a = predict(m, hw, s, l, attention), b = predict(m, hw, g, l, attention);
  CHECK(a.time.step == Approx(b.time.step));
  CHECK(a.memory.in_flight == 4);
  CHECK(b.memory.in_flight == 8);
  CHECK(b.memory.activations > 1.5 * a.memory.activations);
}

TEST_CASE("alpha-beta ring collectives") {
  const Link l{10e-6, 100e9, 50e9};
  CHECK(all_reduce_seconds(1e9, 1, l) == 0.0);
  // 2 (n-1) alpha + 2 (n-1)/n S / beta
  CHECK(all_reduce_seconds(1e9, 4, l) == Approx(6 * 10e-6 + 1.5 * 1e9 / 100e9));
  CHECK(reduce_scatter_seconds(1e9, 4, l) == Approx(3 * 10e-6 + 0.75 * 1e9 / 100e9));
  CHECK(all_gather_seconds(1e9, 4, l) == Approx(reduce_scatter_seconds(1e9, 4, l)));
  CHECK(p2p_seconds(1e6, l) == Approx(10e-6 + 1e6 / 50e9));
}

TEST_CASE("calibrated links: alpha-beta bands through the measured sizes") {
  // All-reduce over 2 ranks: 10 us up to 1 KB, then 1 GB/s of algorithm bandwidth to 1 MB, then
  // half that (out of cache) to 4 MB.
  const std::vector<double> S{4, 1024, 1 << 20, 4 << 20};
  const std::vector<double> t{10e-6, 10e-6, 10e-6 + (1048576.0 - 1024) / 1e9,
                              10e-6 + (1048576.0 - 1024) / 1e9 + 3.0 * 1048576 / 0.5e9};
  Link l{1, 1, 1};
  l.collective_bands = fit_link_bands(S, t, 2);
  l.p2p_bands = fit_link_bands(S, t, 0);
  REQUIRE(l.collective_bands.size() == 3);
  // Every measured point is reproduced, for collectives and point-to-point alike.
  for (size_t i = 0; i < S.size(); ++i) {
    CHECK(all_reduce_seconds(S[i], 2, l) == Approx(t[i]));
    CHECK(p2p_seconds(S[i], l) == Approx(t[i]));
  }
  // Between the points: the straight line; beyond the last: its band extended.
  CHECK(all_reduce_seconds(2 << 20, 2, l) == Approx(t[2] + (t[3] - t[2]) / 3));
  CHECK(all_reduce_seconds(8 << 20, 2, l) == Approx(t[3] + 4.0 * 1048576 / 0.5e9));
  // The band keeps the ring model's per-step latency and bus bandwidth: a 4-rank all-reduce of
  // 4 MB is 3x the latency and 1.5x the bus traffic of a 2-rank one.
  const LinkBand& big = l.collective_bands.back();
  CHECK(all_reduce_seconds(4 << 20, 4, l) ==
        Approx(6 * big.latency_s + 1.5 * 4.0 * 1048576 / big.bandwidth));
  CHECK(big.bandwidth == Approx(0.5e9));  // 2(n-1)/n = 1 for n = 2
  // Noise that makes a larger message faster gives a flat band, never a negative time.
  const auto flat = fit_link_bands({4, 64}, {20e-6, 15e-6}, 2);
  Link f{1, 1, 1};
  f.collective_bands = flat;
  CHECK(all_reduce_seconds(32, 2, f) == Approx(15e-6));
  CHECK_THROWS(fit_link_bands({4}, {1e-6}, 2));
}

TEST_CASE("data-parallel reduction: exposed only past backward, all of it without overlap") {
  ModelShape m = tiny();
  TrainingSetup s;
  s.global_batch = 16, s.seq_len = 64, s.world_size = 2, s.precision = Precision::FP32;
  s.grad_clip = false;
  s.bucket_bytes = 1 << 20;  // several buckets
  Hardware hw = Hardware::preset("h100");
  hw.intra = hw.inter = Link{0, 1e9, 1e9};  // 1 GB/s: 3.3 MB of gradients take ~3.3 ms
  hw.comm_overlap = 1.0;
  const RooflineCostModel costs(hw, s.precision);
  const Layout l{2, 1, 1, 1, 8, false};
  const Prediction on = predict(m, hw, s, l, costs);
  s.overlap = false;
  const Prediction off = predict(m, hw, s, l, costs);
  CHECK(on.time.dp_comm == Approx(off.time.dp_comm));
  CHECK(on.time.dp_comm == Approx(4.0 * 834304 / 1e9).epsilon(0.02));  // 2(n-1)/n = 1
  CHECK(off.time.dp_exposed == Approx(off.time.dp_comm));
  CHECK(on.time.dp_exposed < off.time.dp_exposed);
  CHECK(on.time.step < off.time.step);
  // The embedding's bucket is ready only at the end of backward: something stays exposed.
  CHECK(on.time.dp_exposed > 0);
}

TEST_CASE("infeasible layouts carry trident-train's reasons; OOM names the sizes") {
  const ModelShape gpt2;  // 50257 tokens, 12 layers, 12 heads, width 768
  TrainingSetup s;
  s.global_batch = 512, s.seq_len = 1024, s.world_size = 8, s.precision = Precision::BF16;
  s.flash_attention = true;
  const Hardware hw = Hardware::preset("perlmutter");
  const auto ps = plan(gpt2, hw, s, RooflineCostModel(hw, s.precision));
  const Prediction* tp2 = find(ps, 4, 2, 1);
  REQUIRE(tp2);
  CHECK_FALSE(tp2->feasible);
  CHECK(tp2->reason ==
        "--tp 2 does not divide the vocabulary of 50257 tokens (pad it: --vocab 50304)");
  const Prediction* tp8 = find(ps, 1, 8, 1);
  REQUIRE(tp8);
  CHECK(tp8->reason == "--tp 8 does not divide 12 attention heads");
  const Prediction* pp8 = find(ps, 1, 1, 8);
  REQUIRE(pp8);
  CHECK(pp8->reason == "--pp 8 does not divide the model's 12 layers");
  // dp 8, one micro-batch of 64 sequences of 1024 tokens does not fit in 40 GB.
  const Prediction* big = find(ps, 8, 1, 1, 1, 0);
  REQUIRE(big);
  CHECK_FALSE(big->feasible);
  CHECK(big->memory.total() > 40e9);
  CHECK(big->reason == "OOM: " + format_gb(big->memory.total()) + " > 40.0 GB");
  CHECK(big->reason.rfind("OOM: ", 0) == 0);

  CHECK(layout_problem(gpt2, TrainingSetup{6, 1024, 4}, 4, 1, 1, 0) ==
        "global batch 6 is not divisible by --dp 4");
  CHECK(layout_problem(gpt2, s, 2, 1, 4, 3) ==
        "global batch 512 / dp 2 is not divisible by 3 micro-batches");
  CHECK(layout_problem(gpt2, s, 8, 1, 1, 2).empty());

  ModelShape bad = gpt2;
  bad.heads = 5;
  CHECK_THROWS_WITH(check_inputs(bad, hw, s), "--heads 5 does not divide the embedding width 768");
  TrainingSetup longer = s;
  longer.seq_len = 2048;
  CHECK_THROWS_WITH(check_inputs(gpt2, hw, longer),
                    Catch::Contains("--seq 2048 is longer than the model's context of 1024"));
  CHECK_THROWS_WITH(Hardware::preset("a100"), Catch::Contains("unknown machine preset 'a100'"));
}

TEST_CASE("ranking: fastest first, infeasible last, and the orders one expects") {
  const ModelShape gpt2;
  TrainingSetup s;
  s.global_batch = 512, s.seq_len = 1024, s.world_size = 8, s.precision = Precision::BF16;
  s.flash_attention = true;
  const Hardware hw = Hardware::preset("perlmutter");
  const RooflineCostModel costs(hw, s.precision);
  const auto ps = plan(gpt2, hw, s, costs);
  REQUIRE(ps.size() > 20);
  bool seen_infeasible = false;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!ps[i].feasible) seen_infeasible = true;
    CHECK((ps[i].feasible ? !seen_infeasible : true));
    if (i > 0 && ps[i].feasible) CHECK(ps[i - 1].time.step <= ps[i].time.step);
  }
  // A 124M model on 8 GPUs: plain data parallelism wins (nothing to gain from splitting it).
  CHECK(ps.front().layout.dp == 8);
  CHECK(ps.front().mfu > 0.2);
  CHECK(ps.front().mfu < 0.8);
  // More micro-batches shrink the bubble of the same pipeline.
  const Prediction* m4 = find(ps, 4, 1, 2, 4, 0);
  const Prediction* m32 = find(ps, 4, 1, 2, 32, 0);
  REQUIRE(m4);
  REQUIRE(m32);
  CHECK(m32->time.bubble < m4->time.bubble);
  // ZeRO-1 shrinks memory; a pipeline shrinks the weights per GPU.
  const Prediction* z = find(ps, 8, 1, 1, 8, 1);
  const Prediction* nz = find(ps, 8, 1, 1, 8, 0);
  REQUIRE(z);
  REQUIRE(nz);
  CHECK(z->memory.optimizer == Approx(nz->memory.optimizer / 8));

  SECTION("a model too big for one GPU needs tp or pp") {
    ModelShape big;
    big.vocab = 32768, big.layers = 32, big.heads = 32, big.width = 4096;  // 6.6B parameters
    TrainingSetup t = s;
    t.global_batch = 64, t.seq_len = 1024;
    const auto bp = plan(big, hw, t, costs);
    REQUIRE(bp.front().feasible);
    CHECK(bp.front().layout.tp * bp.front().layout.pp > 1);
    const Prediction* dp8 = find(bp, 8, 1, 1, 8, 0);  // one sequence a micro-batch
    REQUIRE(dp8);
    CHECK_FALSE(dp8->feasible);  // 16 bytes a parameter alone are 105 GB
  }
  SECTION("tensor parallelism across nodes is slower than within one") {
    ModelShape wide = gpt2;
    wide.vocab = 50304;
    TrainingSetup t = s;
    t.world_size = 8;
    Hardware two_per_node = hw;
    two_per_node.gpus_per_node = 2;
    const auto within = plan(wide, hw, t, costs);
    const auto across = plan(wide, two_per_node, t, RooflineCostModel(two_per_node, t.precision));
    const Prediction* a = find(within, 2, 4, 1, 8, 0);
    const Prediction* b = find(across, 2, 4, 1, 8, 0);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(b->time.tp_comm > 3 * a->time.tp_comm);
  }
}

TEST_CASE("ranks sharing cores slow the step by ranks / cores") {
  ModelShape m = tiny();
  TrainingSetup s;
  s.global_batch = 16, s.seq_len = 64, s.world_size = 4, s.precision = Precision::FP32;
  Hardware hw = Hardware::preset("cpu");
  const RooflineCostModel costs(hw, s.precision);
  const Layout l{4, 1, 1, 1, 4, false};
  const Prediction shared = predict(m, hw, s, l, costs);
  hw.cores = 0;
  const Prediction own = predict(m, hw, s, l, costs);
  CHECK(shared.time.time_share == Approx(2.0));
  CHECK(shared.time.step == Approx(2.0 * own.time.step));
  // Costs calibrated with 4 ranks at once on the 2 cores already hold the sharing; calibrated
  // with 1 or 2 ranks they do not.
  hw.cores = 2;
  hw.calibrated_ranks = 4;
  CHECK(predict(m, hw, s, l, costs).time.time_share == Approx(1.0));
  hw.calibrated_ranks = 2;
  CHECK(predict(m, hw, s, l, costs).time.time_share == Approx(2.0));
}

TEST_CASE("a calibration table prices the calls it holds and counts the rest") {
  const Hardware hw = Hardware::preset("cpu");
  const KernelCall g{Kernel::Gemm, false, 1024, 768, 256, 1, false, true};
  CHECK(g.key() == "gemm M=1024 N=768 K=256 x1 tA=0 tB=1");
  CHECK(g.flops() == Approx(2.0 * 1024 * 768 * 256));
  TableCostModel t({{g.key(), 0.5}}, hw, Precision::FP32);
  CHECK(t.seconds(g) == 0.5);
  CHECK(t.misses() == 0);
  const KernelCall a{Kernel::Add, false, 1000};
  CHECK(t.seconds(a) == Approx(RooflineCostModel(hw, Precision::FP32).seconds(a)));
  CHECK(t.misses() == 1);
  // The step factor scales forward and backward kernels, not the optimizer's.
  const KernelCall adam{Kernel::AdamW, false, 1000};
  TableCostModel f({{g.key(), 0.5}, {adam.key(), 0.25}}, hw, Precision::FP32, 1.2);
  CHECK(f.seconds(g) == Approx(0.6));
  CHECK(f.seconds(adam) == Approx(0.25));
  CHECK(f.seconds(a) == Approx(1.2 * RooflineCostModel(hw, Precision::FP32).seconds(a)));
  CHECK_THROWS_WITH(TableCostModel({}, hw, Precision::FP32, 0.0), Catch::Contains("step factor"));
}
