// Embedding lookup and its scatter-add backward against naive loops; the backward must be
// bit-identical for any thread count, and bad ids must be reported with their position.
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/embedding.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::OmpThreads;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

namespace {

std::vector<int32_t> random_ids(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = dist(gen);
  return ids;
}

}  // namespace

TEMPLATE_TEST_CASE("embedding forward and backward match naive loops", "[kernels][embedding]",
                   float, double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 1e-6 : 1e-14;
  // Small (odd sizes, repeated ids) and large enough for several threads.
  for (auto [N, V, C] : {std::tuple<int64_t, int64_t, int64_t>{10, 37, 12}, {2000, 301, 97}}) {
    const auto table = random_vector<T>(V * C, 81);
    auto ids = random_ids(N, V, 82);
    ids[1] = ids[0];  // a repeated id accumulates twice
    std::vector<T> out(N * C), want(N * C);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t c = 0; c < C; ++c) want[i * C + c] = table[ids[i] * C + c];
    }
    cpu::embedding_forward<T>(out.data(), ids.data(), table.data(), N, V, C);
    require_close(out, want, 0, 0, "embedding_forward");

    const auto dout = random_vector<T>(N * C, 83);
    std::vector<double> dwant(V * C, 0.0);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t c = 0; c < C; ++c) dwant[ids[i] * C + c] += dout[i * C + c];
    }
    std::vector<T> dtable(V * C, T(123));  // stale values must be cleared
    cpu::embedding_backward<T>(dtable.data(), dout.data(), ids.data(), N, V, C);
    require_close(dtable, dwant, rtol, rtol, "embedding_backward");
  }
}

TEST_CASE("embedding backward is bit-identical on 1 and 2 threads", "[kernels][embedding]") {
  const int64_t N = 4096, V = 50, C = 96;  // few ids, many collisions
  const auto ids = random_ids(N, V, 91);
  const auto dout = random_vector<float>(N * C, 92);
  std::vector<float> one(V * C), two(V * C);
  {
    OmpThreads threads(1);
    cpu::embedding_backward<float>(one.data(), dout.data(), ids.data(), N, V, C);
  }
  {
    OmpThreads threads(2);
    cpu::embedding_backward<float>(two.data(), dout.data(), ids.data(), N, V, C);
  }
  REQUIRE(one == two);
}

TEST_CASE("embedding rejects ids outside 0..V-1 naming the id and its position",
          "[kernels][embedding]") {
  const int64_t V = 37, C = 4;
  std::vector<float> table(V * C), out(3 * C), dout(3 * C), dtable(V * C);
  const std::vector<int32_t> too_big = {0, 5, 37}, negative = {-2, 1, 2};
  REQUIRE_THROWS_AS(
      cpu::embedding_forward<float>(out.data(), too_big.data(), table.data(), 3, V, C),
      std::out_of_range);
  REQUIRE_THROWS_WITH(
      cpu::embedding_forward<float>(out.data(), too_big.data(), table.data(), 3, V, C),
      Catch::Contains("id 37") && Catch::Contains("position 2"));
  REQUIRE_THROWS_WITH(
      cpu::embedding_backward<float>(dtable.data(), dout.data(), negative.data(), 3, V, C),
      Catch::Contains("id -2") && Catch::Contains("position 0"));
}

TEST_CASE("a vocabulary-parallel shard looks up its own rows and zeros for the others",
          "[kernels][embedding]") {
  // Rows [first, first + V) of a vocabulary of 23: ids of other shards read zeros and add no
  // gradient; the sum over the shards of a split table is the whole lookup.
  const int64_t vocab = 23, C = 7, N = 300;
  const auto table = random_vector<double>(vocab * C, 95);
  const auto ids = random_ids(N, vocab, 96);
  const auto dout = random_vector<double>(N * C, 97);
  std::vector<double> full(N * C), dfull(vocab * C);
  cpu::embedding_forward<double>(full.data(), ids.data(), table.data(), N, vocab, C);
  cpu::embedding_backward<double>(dfull.data(), dout.data(), ids.data(), N, vocab, C);
  std::vector<double> sum(N * C, 0.0);
  const int64_t bounds[] = {0, 9, 10, 23};  // shards of 9, 1 and 13 rows
  for (int s = 0; s < 3; ++s) {
    const int64_t first = bounds[s], V = bounds[s + 1] - first;
    std::vector<double> out(N * C, -1.0), dtable(V * C, 5.0);
    cpu::embedding_forward<double>(out.data(), ids.data(), table.data() + first * C, N, V, C, first,
                                   vocab);
    cpu::embedding_backward<double>(dtable.data(), dout.data(), ids.data(), N, V, C, first, vocab);
    for (int64_t i = 0; i < N; ++i) {
      const bool mine = ids[i] >= first && ids[i] < first + V;
      for (int64_t c = 0; c < C; ++c) {
        REQUIRE(out[i * C + c] == (mine ? full[i * C + c] : 0.0));
        sum[i * C + c] += out[i * C + c];
      }
    }
    const std::vector<double> dwant(dfull.begin() + first * C, dfull.begin() + (first + V) * C);
    REQUIRE(dtable == dwant);
  }
  REQUIRE(sum == full);
  // Ids outside the whole vocabulary are still errors, and a shard must lie inside it.
  std::vector<double> out(C), dtable(13 * C);
  const int32_t bad = 23;
  REQUIRE_THROWS_WITH(
      cpu::embedding_forward<double>(out.data(), &bad, table.data(), 1, 13, C, 10, vocab),
      Catch::Contains("id 23"));
  REQUIRE_THROWS_AS(
      cpu::embedding_backward<double>(dtable.data(), out.data(), &bad, 1, 13, C, 11, vocab),
      std::invalid_argument);
}
