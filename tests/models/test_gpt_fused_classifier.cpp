// The GPT head's fused classifier (ops::cross_entropy_fused: gradient written over the logits,
// padding masked) against the two-pass loss on the same model: the same loss and the same
// gradient of every parameter, with and without a padded vocabulary and with a micro-batch
// scale on the loss; a padded model loaded from an unpadded one trains identically (padding
// rows get zero gradient); evaluation leaves the logits intact.
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <vector>

#include "trident/core/ops.hpp"
#include "trident/core/rng.hpp"
#include "trident/models/gpt.hpp"
#include "trident/models/gpt_stage.hpp"
#include "trident/parallel/pipeline.hpp"
#include "trident/train/sampling.hpp"

using namespace trident;
using trident::models::GPT;
using trident::models::GPTConfig;

namespace {

GPTConfig config(int64_t padded) {
  GPTConfig c;
  c.vocab_size = 97;
  c.padded_vocab_size = padded;
  c.block_size = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  return c;
}

std::pair<Tensor, Tensor> batch(uint64_t seed) {
  Generator gen(seed);
  std::vector<int32_t> x(2 * 12), y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<int32_t>(gen.uniform() * 97.0);
    y[i] = static_cast<int32_t>(gen.uniform() * 97.0);
  }
  y[5] = -1;  // an ignored position
  return {Tensor::from_vector(x, {2, 12}), Tensor::from_vector(y, {2, 12})};
}

// The loss as it was before the fused classifier: logits from the tied head, the real
// vocabulary's columns, the two-pass cross entropy.
Tensor two_pass_loss(GPT& m, const Tensor& x, const Tensor& y) {
  const Tensor hidden = m.forward_stage(x);
  const Tensor logits = ops::linear(hidden, m.wte->weight);
  return ops::cross_entropy(logits.slice(2, 0, m.config().vocab_size).contiguous(), y);
}

void require_same_gradients(GPT& got, GPT& want, double scale, double rtol) {
  const auto pg = got.named_parameters(), pw = want.named_parameters();
  REQUIRE(pg.size() == pw.size());
  const int64_t rows = want.config().table_rows(), C = want.config().n_embd;
  for (size_t k = 0; k < pg.size(); ++k) {
    INFO("gradient of " << pg[k].first);
    REQUIRE(pg[k].second.grad().defined());
    const auto g = pg[k].second.grad().to_vector<float>(),
               w = pw[k].second.grad().to_vector<float>();
    const bool wte = pg[k].first == "wte.weight";
    REQUIRE((wte || g.size() == w.size()));
    const size_t n = wte ? static_cast<size_t>(rows * C) : g.size();
    double worst = 0, norm = 0;
    for (size_t i = 0; i < n; ++i) norm = std::max(norm, std::abs(static_cast<double>(w[i])));
    for (size_t i = 0; i < n; ++i) {
      worst = std::max(worst, std::abs(g[i] - scale * w[i]) / std::max(norm * scale, 1e-12));
    }
    CHECK(worst < rtol);
    int nonzero_padding = 0;  // rows past the vocabulary: never looked up, masked in the loss
    for (size_t i = n; i < g.size(); ++i) nonzero_padding += g[i] != 0.0f;
    CHECK(nonzero_padding == 0);
  }
}

// A GPT stage as the schedules see it, recording the gradient scale they announce to loss(); with
// ignore_scale it passes 1 on, as a model that ignores the scale does (its fused classifier then
// rescales the logits' gradient in backward: the path before the scale was passed down).
class ScaleRecordingStage final : public PipelineStage {
 public:
  ScaleRecordingStage(models::GPTStage& inner, bool ignore_scale)
      : inner_(inner), ignore_scale_(ignore_scale) {}
  Tensor forward(const Tensor& input) override { return inner_.forward(input); }
  Tensor loss(const Tensor& output, const Tensor& targets, double grad_scale) override {
    scales.push_back(grad_scale);
    return inner_.loss(output, targets, ignore_scale_ ? 1.0 : grad_scale);
  }
  bool is_first() const override { return inner_.is_first(); }
  bool is_last() const override { return inner_.is_last(); }
  Shape activation_shape(int64_t b, int64_t T) const override {
    return inner_.activation_shape(b, T);
  }
  std::vector<double> scales;

 private:
  models::GPTStage& inner_;
  bool ignore_scale_;
};

}  // namespace

TEST_CASE("told its upstream gradient, the fused classifier's backward rescales nothing",
          "[models][cross_entropy]") {
  // m micro-batches: the loss is scaled by 1/m, and the classifier told so (grad_scale 1/m).
  // The gradient it wrote over the logits in the forward is the one backward passes on: the
  // rescale factor is exactly 1 (the buffer is not touched). Against the old path (grad_scale 1,
  // the buffer rescaled by 1/m in backward): the same gradients, bitwise for m = 4.
  const Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 3, -1, 7, 2, 1}, {6});
  // 41: f32(1/41) * 41 is 1 - 2^-24, so the factor must come from a division.
  for (int m : {4, 3, 41}) {
    INFO("m = " << m);
    Generator gen(21);
    Tensor w = Tensor::empty({6, 10}, DType::F32), w_old = Tensor::empty({6, 10}, DType::F32);
    gen.normal_(w, 0.0, 2.0);
    w_old.copy_(w);
    w.requires_grad_(true);
    w_old.requires_grad_(true);
    const double scale = 1.0 / m;
    const Tensor logits = w * 1.0, logits_old = w_old * 1.0;
    const Tensor l = ops::cross_entropy_fused(logits, targets, 8, scale);
    const Tensor l_old = ops::cross_entropy_fused(logits_old, targets, 8);
    CHECK(l.item() == l_old.item());
    const std::vector<float> written = logits.to_vector<float>();
    (l * scale).backward();
    (l_old * scale).backward();
    CHECK(logits.to_vector<float>() == written);  // factor 1: backward rescaled nothing
    const auto g = w.grad().to_vector<float>(), g_old = w_old.grad().to_vector<float>();
    REQUIRE(g.size() == g_old.size());
    double worst = 0, norm = 0;
    for (const float v : g_old) norm = std::max(norm, std::abs(static_cast<double>(v)));
    for (size_t i = 0; i < g.size(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(g[i]) - g_old[i]) / norm);
    // 1/4 scales exactly; 1/m rounds here in dloss = (1/m)/count, on the old path in 1/count
    // and in the rescale: a few f32 roundings apart.
    CHECK(worst <= (m == 4 ? 0.0 : 5e-7));
  }
}

TEST_CASE("a pipeline of 4 micro-batches tells the GPT's classifier 1/4: old losses and gradients",
          "[models][cross_entropy]") {
  // One stage under GPipe with m = 4: the schedule announces grad_scale 1/4 to every loss; the
  // GPT that uses it (no rescale pass in backward) and the one that ignores it (rescale by 1/4)
  // give bitwise the same losses and parameter gradients.
  std::vector<MicroBatch> mbs;
  for (uint64_t k = 0; k < 4; ++k) {
    const auto [x, y] = batch(30 + k);
    mbs.push_back({x, y});
  }
  GPT told(config(128), 17), ignoring(config(128), 17);
  models::GPTStage told_stage(told), ignoring_stage(ignoring);
  ScaleRecordingStage a(told_stage, false), b(ignoring_stage, true);
  PipelineScheduleGPipe gpipe;
  const PipelineStepStats sa = gpipe.run(a, mbs, told.parallel().pp());
  const PipelineStepStats sb = gpipe.run(b, mbs, ignoring.parallel().pp());
  CHECK(a.scales == std::vector<double>(4, 0.25));
  CHECK(sa.loss == sb.loss);
  const auto pa = told.named_parameters(), pb = ignoring.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t k = 0; k < pa.size(); ++k) {
    INFO("gradient of " << pa[k].first);
    REQUIRE(pa[k].second.grad().defined());
    CHECK(pa[k].second.grad().to_vector<float>() == pb[k].second.grad().to_vector<float>());
  }
}

TEST_CASE("GPT's fused classifier gives the two-pass loss and every parameter gradient",
          "[models][cross_entropy]") {
  const auto [x, y] = batch(5);
  for (int64_t padded : {int64_t{0}, int64_t{128}}) {
    for (double scale : {1.0, 0.25}) {  // 0.25: a micro-batch scale, the backward's rescale
      INFO("padded vocabulary " << padded << ", loss scale " << scale);
      GPT fused(config(padded), 11), ref(config(padded), 11);
      Tensor lf = fused.loss(x, y), lr = two_pass_loss(ref, x, y);
      CHECK(std::abs(lf.item() - lr.item()) <= 1e-6 * lr.item());
      (scale == 1.0 ? lf : lf * scale).backward();
      lr.backward();
      require_same_gradients(fused, ref, scale, 1e-5);
    }
  }
}

TEST_CASE("a padded GPT loaded from an unpadded one has the same loss and gradients",
          "[models][cross_entropy]") {
  const auto [x, y] = batch(6);
  GPT plain(config(0), 3), padded(config(128), 99);
  std::map<std::string, std::vector<float>> values;
  for (auto& [name, p] : plain.named_parameters()) values[name] = p.to_vector<float>();
  padded.load_named(values);  // wte: 97 rows into a 128-row table, the rest zero
  const auto w = padded.wte->weight.to_vector<float>();
  REQUIRE(std::vector<float>(w.begin(), w.begin() + 97 * 32) == values["wte.weight"]);
  REQUIRE(std::vector<float>(w.begin() + 97 * 32, w.end()) == std::vector<float>(31 * 32, 0.0f));
  Tensor lp = padded.loss(x, y), lu = plain.loss(x, y);
  CHECK(std::abs(lp.item() - lu.item()) <= 1e-6 * lu.item());
  lp.backward();
  lu.backward();
  require_same_gradients(padded, plain, 1.0, 1e-5);
  // Sampling never picks a padding column, even where its logit would win: padding rows of 50.
  {
    NoGradGuard no_grad;
    Tensor table = padded.wte->weight;
    table.slice(0, 97, 128).fill_(50.0);
  }
  Generator gen(1);
  models::GPTStage stage(padded);
  train::SampleOptions so;
  so.new_tokens = 8;
  so.context_len = padded.config().block_size;
  so.vocab_size = padded.config().vocab_size;
  for (int32_t t : train::generate(stage, {1, 2, 3}, so, gen)) CHECK(t < 97);
}

TEST_CASE("the fused classifier leaves logits intact without gradients and refuses a leaf",
          "[models][cross_entropy]") {
  Generator gen(9);
  Tensor logits = Tensor::empty({6, 10}, DType::F32);
  gen.normal_(logits, 0.0, 2.0);
  const auto before = logits.to_vector<float>();
  const Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 3, -1, 7, 2, 1}, {6});
  const double want = ops::cross_entropy(logits.slice(1, 0, 8).contiguous(), targets).item();
  {
    NoGradGuard no_grad;  // evaluation
    logits.requires_grad_(true);
    CHECK(std::abs(ops::cross_entropy_fused(logits, targets, 8).item() - want) < 1e-6);
  }
  CHECK(logits.to_vector<float>() == before);
  CHECK_THROWS_WITH(ops::cross_entropy_fused(logits, targets, 8),
                    Catch::Contains("not a leaf tensor"));
  CHECK(logits.to_vector<float>() == before);
  CHECK_THROWS_WITH(ops::cross_entropy_fused(logits * 1.0, targets, 11),
                    Catch::Contains("vocabulary of 11"));
  const Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, 3, -1, 8, 2, 1}, {6});
  CHECK_THROWS_WITH(ops::cross_entropy_fused(logits * 1.0, bad, 8),
                    Catch::Contains("target 8") && Catch::Contains("position 3"));
}
