// The Llama split by tensor and pipeline parallelism against PyTorch: the fixture model of
// tests/models/test_llama_reference.cpp (2 layers, 4 q heads, 2 kv heads, MLP 88, vocabulary
// 64), loaded from the fixture's full weights into each rank's shards, runs one step of the
// 1F1B schedule on 3 micro-batches of the fixture batch. The loss and every rank's gradient
// shard must match the slice of torch's (float64) full gradient at the single-process test's
// tolerance (per element 1e-5 max|b| + 1e-5 |b|). Layouts: tp 2 and pp 2 on 2 ranks; tp 2 x pp 2
// on 4; and tp 4 on 4, which cannot split 2 kv heads and must fail on every rank with the cause.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "mpi_test_util.hpp"
#include "reference_check.hpp"
#include "trident/models/llama.hpp"
#include "trident/models/llama_stage.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/parallel/pipeline.hpp"

using namespace trident;
namespace rc = trident::reference_check;

namespace {

using Job = test_util::MpiJob;

std::vector<ParallelLayout> layouts(int world) {
  if (world == 2) return {{1, 2, 1}, {1, 1, 2}};
  if (world == 4) return {{1, 2, 2}};
  return {};
}

}  // namespace

TEST_CASE("Llama at tp 2, pp 2 and tp 2 x pp 2: loss and gradient shards match PyTorch",
          "[mpi][llama]") {
  const int world_size = test_util::make_world()->size();
  for (const ParallelLayout& layout : layouts(world_size)) {
    Job job(layout);
    INFO("dp " << layout.dp << " tp " << layout.tp << " pp " << layout.pp << ", rank "
               << job.world->rank());
    auto f = SafetensorsFile::open(rc::fixture("llama_tiny_grads.safetensors"));
    const models::LlamaConfig cfg = rc::llama_config(f);
    models::Llama model(cfg, 1, Device::cpu(), job.ctx.get());
    // Every parameter this rank holds is cut from the fixture's full tensor.
    model.load_named(rc::weights(f, model));
    models::LlamaStage stage(model);
    const int64_t B = std::stoll(f.metadata().at("batch")), T = std::stoll(f.metadata().at("seq"));
    const Tensor ids = rc::batch(f, "inputs", {B, T}, -1, Device::cpu());
    const Tensor targets = rc::batch(f, "targets", {B, T}, -1, Device::cpu());
    std::vector<MicroBatch> mbs;
    for (int64_t i = 0; i < B; ++i)
      mbs.push_back({ids.slice(0, i, i + 1).contiguous(), targets.slice(0, i, i + 1).contiguous()});
    const PipelineStepStats st = make_pipeline_schedule("1f1b")->run(stage, mbs, job.ctx->pp());
    const double want_loss = f.read_f32("loss")[0];
    CHECK(std::abs(st.loss - want_loss) <= 1e-5 * want_loss);

    const auto params = model.named_parameters();
    const auto specs = model.named_shard_specs();
    REQUIRE(!params.empty());
    double worst = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, p] = params[i];
      INFO("gradient of " << name);
      REQUIRE(p.grad().defined());
      const nn::ShardSpec& spec = specs[i].second;
      const Tensor full =
          Tensor::from_vector(f.read_f32("grad." + name), spec.full_shape(p.shape()));
      // The shard's expected gradient; the tolerance's scale is the full tensor's max.
      const std::vector<float> want = spec.slice(full).to_vector<float>();
      double scale = 0;
      for (float v : full.to_vector<float>()) scale = std::max(scale, std::fabs(double(v)));
      const std::vector<float> got = p.grad().to_vector<float>();
      // As test_llama_reference.cpp's gradients, on the full tensor's scale.
      worst = std::max(worst, rc::expect_close("grad." + name, got, want, {1e-5, 1e-6}, scale));
    }
    std::printf(
        "llama mpi: dp %d tp %d pp %d rank %d: %zu parameters, loss %.9g vs %.9g, worst "
        "gradient ratio %.3g\n",
        layout.dp, layout.tp, layout.pp, job.world->rank(), params.size(), st.loss, want_loss,
        worst);
  }
}

TEST_CASE("Llama at tp 4 with 2 kv heads fails on every rank naming the kv heads", "[mpi][llama]") {
  const int world_size = test_util::make_world()->size();
  if (world_size != 4) return;
  Job job({1, 4, 1});
  auto f = SafetensorsFile::open(rc::fixture("llama_tiny_grads.safetensors"));
  CHECK_THROWS_WITH(models::Llama(rc::llama_config(f), 1, Device::cpu(), job.ctx.get()),
                    Catch::Contains("--tp 4 does not divide the 2 key/value heads"));
}
