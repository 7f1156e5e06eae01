// The hyperslabs a rank writes and reads of a checkpoint tensor (shard_hyperslabs, read by
// CheckpointReader::read_hyperslabs) are exactly the elements ShardSpec::slice gives it, in the
// same order: for tensor-parallel splits along either dimension, with and without blocks (the
// fused qkv), and for every kind of flat range of the shard (ZeRO-1 parts and dp splits start
// and end mid-row).
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "io_test_util.hpp"
#include "trident/core/nn/module.hpp"
#include "trident/io/checkpoint.hpp"
#include "trident/parallel/distributed_checkpoint.hpp"

using namespace trident;

TEST_CASE("checkpoint hyperslabs of a shard range hold exactly that range of the shard",
          "[io][checkpoint]") {
  trident::test::ScratchDir dir("ckpt_slabs");
  struct Case {
    Shape full;
    int dim, parts, blocks;
  };
  const std::vector<Case> cases = {{{12, 8}, -1, 1, 1},   {{12, 8}, 0, 2, 1},   {{12, 8}, 1, 4, 1},
                                   {{12, 24}, 1, 2, 3},   {{18, 8}, 0, 3, 3},   {{16}, 0, 4, 1},
                                   {{6, 4, 10}, 2, 2, 1}, {{6, 4, 10}, 1, 2, 2}};
  std::mt19937 rng(7);
  int checked = 0;
  for (size_t c = 0; c < cases.size(); ++c) {
    const Case& k = cases[c];
    int64_t numel = 1;
    for (int64_t d : k.full) numel *= d;
    std::vector<float> full(static_cast<size_t>(numel));
    for (size_t i = 0; i < full.size(); ++i) full[i] = static_cast<float>(i) + 0.5f;
    const std::string path = dir.file("c" + std::to_string(c) + ".h5");
    {
      CheckpointWriter w(path);
      w.add("p", "value", std::vector<int64_t>(k.full.begin(), k.full.end()), full.data());
      w.commit();
    }
    CheckpointReader r(path);
    const Tensor full_t = Tensor::from_vector(full, k.full);
    const int parts = k.dim < 0 ? 1 : k.parts;
    for (int index = 0; index < parts; ++index) {
      const nn::ShardSpec spec{k.dim, k.parts, index, k.blocks};
      const Tensor shard = spec.slice(full_t);
      const int64_t n = shard.numel();
      std::vector<std::pair<int64_t, int64_t>> ranges = {{0, n}, {0, 1}, {n - 1, n}, {2, n - 2}};
      for (int t = 0; t < 20; ++t) {
        std::uniform_int_distribution<int64_t> pick(0, n);
        int64_t a = pick(rng), b = pick(rng);
        if (a > b) std::swap(a, b);
        ranges.emplace_back(a, b);
      }
      for (const auto& [lo, hi] : ranges) {
        const auto boxes = shard_hyperslabs(shard.shape(), spec, lo, hi);
        int64_t total = 0;
        for (const auto& b : boxes) total += b.numel();
        INFO("case " << c << " index " << index << " range [" << lo << ", " << hi << ")");
        REQUIRE(total == hi - lo);
        std::vector<float> got(static_cast<size_t>(hi - lo));
        r.read_hyperslabs("p", "value", boxes, got.data());
        // (an empty range has no data(): memcmp must not see its null pointer)
        CHECK((got.empty() ||
               std::memcmp(got.data(), shard.data<float>() + lo, got.size() * sizeof(float)) == 0));
        ++checked;
      }
    }
  }
  CHECK(checked > 300);
}
