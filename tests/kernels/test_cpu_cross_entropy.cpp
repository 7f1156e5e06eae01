// Fused softmax cross entropy: forward against a double log-sum-exp reference (with an ignored
// target and large logits), backward by central differences, threaded size in float,
// out-of-range targets reported with their position, and the vocabulary-parallel form (slice
// statistics, combine, mean) against the serial kernels; the fused classifier (in-place
// gradient, padded vocabulary) against the two-pass kernels.
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/cross_entropy.hpp"

namespace cpu = trident::kernels::cpu;
using trident::kernels::test::cast_vector;
using trident::kernels::test::check_gradient;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;
using trident::kernels::test::weighted_sum;

namespace {

// Reference lse and losses; long double so that logits of 1e4 lose nothing.
void reference_cross_entropy(const std::vector<double>& logits, const std::vector<int32_t>& targets,
                             int64_t N, int64_t V, std::vector<double>& losses,
                             std::vector<double>& lse) {
  losses.assign(N, 0.0);
  lse.assign(N, 0.0);
  for (int64_t i = 0; i < N; ++i) {
    long double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max<long double>(mx, logits[i * V + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[i * V + j] - mx);
    lse[i] = static_cast<double>(mx + std::log(s));
    if (targets[i] >= 0)
      losses[i] = static_cast<double>(mx + std::log(s) - logits[i * V + targets[i]]);
  }
}

std::vector<int32_t> make_targets(int64_t N, int64_t V) {
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>((i * 7 + 3) % V);
  t[N / 2] = -1;  // ignored position
  return t;
}

}  // namespace

TEST_CASE("cross entropy forward and backward (double, central differences)",
          "[kernels][cross_entropy]") {
  const int64_t N = 6, V = 37;
  auto logits = random_vector<double>(N * V, 301, -3, 3);
  const auto targets = make_targets(N, V);
  const auto w = random_vector<double>(N, 302, 0.5, 1.5);
  std::vector<double> losses(N), lse(N), want_losses, want_lse;
  const auto loss = [&] {
    cpu::cross_entropy_forward<double>(losses.data(), lse.data(), logits.data(), targets.data(), N,
                                       V);
    return weighted_sum(losses, w);
  };
  loss();
  reference_cross_entropy(logits, targets, N, V, want_losses, want_lse);
  require_close(losses, want_losses, 1e-13, 1e-14, "losses");
  require_close(lse, want_lse, 1e-13, 1e-14, "lse");
  REQUIRE(losses[N / 2] == 0.0);

  std::vector<double> dlogits(N * V, std::numeric_limits<double>::quiet_NaN());
  cpu::cross_entropy_backward<double>(dlogits.data(), logits.data(), lse.data(), targets.data(),
                                      w.data(), N, V);
  REQUIRE(std::vector<double>(dlogits.begin() + (N / 2) * V, dlogits.begin() + (N / 2 + 1) * V) ==
          std::vector<double>(V, 0.0));
  check_gradient(logits, dlogits, loss, "dlogits");
}

TEMPLATE_TEST_CASE("cross entropy is stable for large logits and on threaded sizes",
                   "[kernels][cross_entropy]", float, double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 1e-6 : 1e-13;
  for (auto [N, V, range] : {std::tuple<int64_t, int64_t, double>{6, 37, 1e4}, {301, 257, 5.0}}) {
    const auto logits = random_vector<double>(N * V, 311, -range, range);
    const auto targets = make_targets(N, V);
    std::vector<double> want_losses, want_lse;
    reference_cross_entropy(cast_vector<double>(cast_vector<T>(logits)), targets, N, V, want_losses,
                            want_lse);
    const auto lt = cast_vector<T>(logits);
    std::vector<T> losses(N), lse(N);
    cpu::cross_entropy_forward<T>(losses.data(), lse.data(), lt.data(), targets.data(), N, V);
    require_close(lse, want_lse, rtol, rtol, "lse");
    require_close(losses, want_losses, rtol, rtol * range, "losses");

    // Gradient rows: softmax minus one-hot, scaled by dloss; they sum to zero.
    const auto dl = cast_vector<T>(random_vector<double>(N, 312, 0.5, 1.5));
    std::vector<T> dlogits(N * V);
    cpu::cross_entropy_backward<T>(dlogits.data(), lt.data(), lse.data(), targets.data(), dl.data(),
                                   N, V);
    std::vector<double> want(N * V);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < V; ++j) {
        if (targets[i] < 0) continue;
        want[i * V + j] = (std::exp(static_cast<double>(lt[i * V + j]) - want_lse[i]) -
                           (j == targets[i] ? 1.0 : 0.0)) *
                          static_cast<double>(dl[i]);
      }
    }
    require_close(dlogits, want, 1e-5, 1e-6, "dlogits");
  }
}

TEST_CASE("cross entropy rejects targets >= V naming the target and position",
          "[kernels][cross_entropy]") {
  const int64_t N = 4, V = 37;
  std::vector<float> logits(N * V), losses(N), lse(N);
  const std::vector<int32_t> targets = {1, -1, 2, 37};
  REQUIRE_THROWS_AS(cpu::cross_entropy_forward<float>(losses.data(), lse.data(), logits.data(),
                                                      targets.data(), N, V),
                    std::out_of_range);
  REQUIRE_THROWS_WITH(cpu::cross_entropy_forward<float>(losses.data(), lse.data(), logits.data(),
                                                        targets.data(), N, V),
                      Catch::Contains("target 37") && Catch::Contains("position 3"));
}

// Megatron-LM's vocabulary-parallel loss: logits split into column slices, each summarised by
// cross_entropy_shard_stats, combined in slice order. Per element it must reproduce the serial
// kernels (lse and losses to rounding, since the slices' sums are rescaled to the global max;
// each slice's dlogits are the serial dlogits' columns), with ignored rows, targets in every
// slice, and a row whose logits peak in a later slice than its target.
TEMPLATE_TEST_CASE("vocabulary-parallel cross entropy reproduces the serial kernels per element",
                   "[kernels][cross_entropy]", float, double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 2e-6 : 1e-13;
  const int64_t N = 7, V = 36;
  const auto logits = cast_vector<T>(random_vector<double>(N * V, 321, -4, 4));
  auto targets = make_targets(N, V);  // row 3 ignored
  targets[0] = 0;
  targets[6] = static_cast<int32_t>(V - 1);
  std::vector<T> want_losses(N), want_lse(N), want_dx(N * V);
  const auto dl = cast_vector<T>(random_vector<double>(N, 322, 0.5, 1.5));
  cpu::cross_entropy_forward<T>(want_losses.data(), want_lse.data(), logits.data(), targets.data(),
                                N, V);
  cpu::cross_entropy_backward<T>(want_dx.data(), logits.data(), want_lse.data(), targets.data(),
                                 dl.data(), N, V);
  for (int parts : {1, 2, 3, 4}) {
    INFO(parts << " slices");
    const int64_t Vl = V / parts;
    std::vector<T> stats(static_cast<size_t>(parts) * N * 4), slice(N * Vl);
    for (int p = 0; p < parts; ++p) {
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < Vl; ++j) slice[i * Vl + j] = logits[i * V + p * Vl + j];
      }
      cpu::cross_entropy_shard_stats<T>(stats.data() + p * N * 4, slice.data(), targets.data(), N,
                                        Vl, p * Vl);
    }
    std::vector<T> losses(N), lse(N);
    cpu::cross_entropy_shard_combine<T>(losses.data(), lse.data(), stats.data(), targets.data(), N,
                                        parts);
    require_close(lse, want_lse, rtol, rtol, "lse");
    require_close(losses, want_losses, rtol, rtol, "losses");
    REQUIRE(losses[N / 2] == T(0));
    if (parts == 1) REQUIRE(lse == want_lse);  // one slice: the serial arithmetic exactly
    for (int p = 0; p < parts; ++p) {
      INFO("slice " << p);
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < Vl; ++j) slice[i * Vl + j] = logits[i * V + p * Vl + j];
      }
      std::vector<T> dx(N * Vl), want(N * Vl);
      cpu::cross_entropy_backward<T>(dx.data(), slice.data(), lse.data(), targets.data(), dl.data(),
                                     N, Vl, p * Vl);
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < Vl; ++j) want[i * Vl + j] = want_dx[i * V + p * Vl + j];
      }
      require_close(dx, want, 4 * rtol, rtol, "dlogits of the slice");
    }
  }
}

TEST_CASE("vocabulary-parallel cross entropy: a target no slice holds gives a NaN loss",
          "[kernels][cross_entropy]") {
  const int64_t N = 2, V = 5;
  const auto logits = cast_vector<float>(random_vector<double>(N * V, 331, -1, 1));
  const std::vector<int32_t> targets = {1, 2 * static_cast<int32_t>(V)};  // vocabulary of 2V
  std::vector<float> stats(2 * N * 4), losses(N), lse(N);
  for (int p = 0; p < 2; ++p) {
    cpu::cross_entropy_shard_stats<float>(stats.data() + p * N * 4, logits.data(), targets.data(),
                                          N, V, p * V);
  }
  cpu::cross_entropy_shard_combine<float>(losses.data(), lse.data(), stats.data(), targets.data(),
                                          N, 2);
  CHECK(std::isfinite(losses[0]));
  CHECK(std::isnan(losses[1]));
  CHECK(std::isfinite(lse[1]));
  REQUIRE_THROWS_AS(
      cpu::cross_entropy_shard_stats<float>(stats.data(), logits.data(), targets.data(), N, 0, 0),
      std::invalid_argument);
}

TEST_CASE("cross entropy mean: over non-ignored rows, 1 / count as the row gradient",
          "[kernels][cross_entropy]") {
  const std::vector<float> losses = {1.5f, 7.0f, 2.5f, 0.5f};
  float mean = -1, inv = -1;
  cpu::cross_entropy_mean<float>(&mean, &inv, losses.data(),
                                 std::vector<int32_t>{3, -1, 0, 9}.data(), 4);
  CHECK(mean == 1.5f);  // (1.5 + 2.5 + 0.5) / 3 (row 1 ignored)
  CHECK(inv == 1.0f / 3.0f);
  cpu::cross_entropy_mean<float>(&mean, &inv, losses.data(),
                                 std::vector<int32_t>{-1, -1, -1, -1}.data(), 4);
  CHECK(mean == 0.0f);  // nothing to average: 0, not 0 / 0
  CHECK(inv == 1.0f);
}

// The fused classifier against the two-pass kernels, per element: on a row block padded from
// `vocab` to V columns (padding holding large logits that would dominate the softmax if they
// counted), its losses must equal cross_entropy_forward's over the first `vocab` columns and its
// in-place gradient cross_entropy_backward's with dloss = grad_scale / count (the same row
// arithmetic, to the last bits Eigen's vectorised exp gives at another alignment: 2 ulp);
// padding columns and ignored rows get exactly zero.
TEMPLATE_TEST_CASE("fused classifier equals the two-pass kernels per element, padding masked",
                   "[kernels][cross_entropy]", float, double) {
  using T = TestType;
  const double ulp2 = 2 * static_cast<double>(std::numeric_limits<T>::epsilon());
  for (auto [N, vocab, V] :
       {std::tuple<int64_t, int64_t, int64_t>{6, 37, 37}, {9, 37, 48}, {301, 257, 384}}) {
    INFO("N " << N << ", vocab " << vocab << ", V " << V);
    auto padded = cast_vector<T>(random_vector<double>(N * V, 341, -4, 4));
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = vocab; j < V; ++j) padded[i * V + j] = T(30);
    }
    const auto targets = make_targets(N, vocab);  // one ignored row
    std::vector<T> plain(N * vocab);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < vocab; ++j) plain[i * vocab + j] = padded[i * V + j];
    }
    std::vector<T> want_losses(N), lse(N), want_dx(N * vocab);
    cpu::cross_entropy_forward<T>(want_losses.data(), lse.data(), plain.data(), targets.data(), N,
                                  vocab);
    const double grad_scale = 0.25;  // N - 1 rows count (one is ignored)
    const std::vector<T> dl(N, static_cast<T>(grad_scale / static_cast<double>(N - 1)));
    cpu::cross_entropy_backward<T>(want_dx.data(), plain.data(), lse.data(), targets.data(),
                                   dl.data(), N, vocab);

    // Loss only: the logits stay as they are.
    std::vector<T> losses(N, T(-1)), x = padded;
    cpu::cross_entropy_fused<T>(x.data(), losses.data(), nullptr, targets.data(), N, V, vocab, 1.0);
    require_close(losses, want_losses, ulp2, 0.0, "losses");
    REQUIRE(x == padded);

    T dloss = T(-1);
    losses.assign(N, T(-1));
    cpu::cross_entropy_fused<T>(x.data(), losses.data(), &dloss, targets.data(), N, V, vocab,
                                grad_scale);
    require_close(losses, want_losses, ulp2, 0.0, "losses");
    REQUIRE(dloss == dl[0]);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < V; ++j) {
        const T want = j < vocab ? want_dx[i * vocab + j] : T(0);
        // The target's p - 1 cancels: its error is relative to dloss, not to the result.
        const double tol =
            ulp2 * (std::abs(static_cast<double>(want)) + static_cast<double>(dl[0]));
        if (std::abs(static_cast<double>(x[i * V + j] - want)) > tol ||
            (j >= vocab && x[i * V + j] != T(0))) {
          FAIL_CHECK("dlogits[" << i << ", " << j << "] = " << x[i * V + j] << ", two-pass "
                                << want);
        }
      }
    }
  }
}

TEST_CASE("fused classifier: a target in the padding is an error, nothing written; rescale",
          "[kernels][cross_entropy]") {
  const int64_t N = 3, vocab = 5, V = 8;
  auto x = cast_vector<float>(random_vector<double>(N * V, 351, -1, 1));
  const auto before = x;
  std::vector<float> losses(N);
  float dloss = 0;
  const std::vector<int32_t> targets = {1, 5, 2};  // 5: a padding column, not a token
  REQUIRE_THROWS_WITH(cpu::cross_entropy_fused<float>(x.data(), losses.data(), &dloss,
                                                      targets.data(), N, V, vocab, 1.0),
                      Catch::Contains("target 5") && Catch::Contains("position 1"));
  REQUIRE(x == before);
  REQUIRE_THROWS_AS(cpu::cross_entropy_fused<float>(x.data(), losses.data(), &dloss, targets.data(),
                                                    N, V, V + 1, 1.0),
                    std::invalid_argument);

  const float one = 1.0f, half = 0.5f;
  cpu::cross_entropy_fused_rescale<float>(x.data(), &one, N * V);
  REQUIRE(x == before);
  cpu::cross_entropy_fused_rescale<float>(x.data(), &half, N * V);
  for (int64_t k = 0; k < N * V; ++k) CHECK(x[k] == before[k] * 0.5f);
}
