// Softmax cross entropy fused with log-softmax; probabilities are never stored.
// logits (N, V) row-major, targets (N) int32 (< 0: ignored row, loss 0 and gradient 0).
// Forward: lse = max + log(sum exp(x - max)) (max-subtracted, stable), loss = lse - x[target].
// Backward: dlogits[i, j] = (exp(x[i, j] - lse[i]) - [j == target]) * dlosses[i], with the
// target shifted by vocab_start when the logits are one vocabulary slice.
// Vocabulary-parallel forward: each slice reduces its rows to stats (N, 4) = {max m,
// sum exp(x - m), target logit, holds-target}; after an all-gather, combine rescales the sums to
// the global max (online softmax: s_p exp(m_p - M)) and adds the target logits.
// Fused classifier: the forward's row pass over the real vocabulary (columns [vocab, V) are
// padding) and, in the same row visit, the gradient written over the logits (see the header).
// Rows run in parallel; targets are validated up front, before any thread starts.
#include "trident/kernels/cpu/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

using detail::ArrayMap;
using detail::ConstArrayMap;

void check_targets(const char* who, const int32_t* targets, int64_t N, int64_t V) {
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] >= V) {
      throw std::out_of_range(std::string(who) + ": target " + std::to_string(targets[i]) +
                              " at position " + std::to_string(i) + " is not below the " +
                              std::to_string(V) +
                              " classes (use a negative target to ignore a position)");
    }
  }
}

// The row's max and sum of exp(x - max): the serial forward and the slice statistics share it,
// so one slice gives bit for bit the serial lse.
template <typename T>
void max_and_sum_exp(const T* row, int64_t V, T& mx, T& sum) {
  ConstArrayMap<T> x(row, V);
  mx = x.maxCoeff();
  sum = (x - mx).exp().sum();
}

}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V) {
  check_targets("cross_entropy_forward", targets, N, V);
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = logits + i * V;
    T mx, s;
    max_and_sum_exp(x, V, mx, s);
    const T l = mx + std::log(s);
    lse[i] = l;
    losses[i] = targets[i] < 0 ? T(0) : l - x[targets[i]];
  }
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            const T* dlosses, int64_t N, int64_t V, int64_t vocab_start) {
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    ArrayMap<T> dx(dlogits + i * V, V);
    if (targets[i] < 0) {
      dx.setZero();
      continue;
    }
    ConstArrayMap<T> x(logits + i * V, V);
    const T dl = dlosses[i];
    dx = (x - lse[i]).exp() * dl;
    const int64_t t = targets[i] - vocab_start;
    if (t >= 0 && t < V) dx[t] -= dl;
  }
}

template <typename T>
void cross_entropy_fused(T* logits, T* losses, T* dloss, const int32_t* targets, int64_t N,
                         int64_t V, int64_t vocab, double grad_scale) {
  if (vocab <= 0 || vocab > V) {
    throw std::invalid_argument("cross_entropy_fused: vocabulary of " + std::to_string(vocab) +
                                " for rows of " + std::to_string(V) + " logits");
  }
  check_targets("cross_entropy_fused", targets, N, vocab);
  T dl = T(0);
  if (dloss != nullptr) {
    int64_t count = 0;
    for (int64_t i = 0; i < N; ++i) count += targets[i] >= 0 ? 1 : 0;
    dl = static_cast<T>(grad_scale / static_cast<double>(std::max<int64_t>(count, 1)));
    *dloss = dl;
  }
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    T* x = logits + i * V;
    T mx, s;
    max_and_sum_exp<T>(x, vocab, mx, s);
    const T l = mx + std::log(s);
    const int32_t t = targets[i];
    losses[i] = t < 0 ? T(0) : l - x[t];
    if (dloss == nullptr) continue;
    ArrayMap<T> dx(x, V);
    if (t < 0) {
      dx.setZero();
      continue;
    }
    dx.head(vocab) = (dx.head(vocab) - l).exp() * dl;
    dx.tail(V - vocab).setZero();
    dx[t] -= dl;
  }
}

template <typename T>
void cross_entropy_fused_rescale(T* x, const T* factor, int64_t n) {
  const T f = *factor;
  if (f == T(1)) return;
  ArrayMap<T>(x, n) *= f;
}

template <typename T>
void cross_entropy_shard_stats(T* stats, const T* logits, const int32_t* targets, int64_t N,
                               int64_t V, int64_t vocab_start) {
  if (V <= 0) {
    throw std::invalid_argument(
        "cross_entropy_shard_stats: empty vocabulary slice (V = " + std::to_string(V) + ")");
  }
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* x = logits + i * V;
    T* s = stats + i * 4;
    max_and_sum_exp(x, V, s[0], s[1]);
    const int64_t t = targets[i] - vocab_start;
    const bool held = targets[i] >= 0 && t >= 0 && t < V;
    s[2] = held ? x[t] : T(0);
    s[3] = held ? T(1) : T(0);
  }
}

template <typename T>
void cross_entropy_shard_combine(T* losses, T* lse, const T* stats, const int32_t* targets,
                                 int64_t N, int parts) {
#pragma omp parallel for schedule(static) if (N * parts > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    T m = -std::numeric_limits<T>::infinity();
    for (int p = 0; p < parts; ++p) m = std::max(m, stats[(p * N + i) * 4]);
    T s = 0, tl = 0, held = 0;
    for (int p = 0; p < parts; ++p) {
      const T* st = stats + (p * N + i) * 4;
      s += st[1] * std::exp(st[0] - m);
      tl += st[2];
      held += st[3];
    }
    const T l = m + std::log(s);
    lse[i] = l;
    losses[i] = targets[i] < 0 ? T(0) : held == T(1) ? l - tl : std::numeric_limits<T>::quiet_NaN();
  }
}

template <typename T>
void cross_entropy_mean(T* mean, T* inv_count, const T* losses, const int32_t* targets, int64_t N) {
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] < 0) continue;
    total += static_cast<double>(losses[i]);
    ++count;
  }
  const double denom = count > 0 ? static_cast<double>(count) : 1.0;
  *mean = static_cast<T>(total / denom);
  *inv_count = static_cast<T>(1.0 / denom);
}

#define TRIDENT_CROSS_ENTROPY_INSTANTIATE(T)                                                    \
  template void cross_entropy_forward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t);   \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, const T*,     \
                                          int64_t, int64_t, int64_t);                           \
  template void cross_entropy_shard_stats<T>(T*, const T*, const int32_t*, int64_t, int64_t,    \
                                             int64_t);                                          \
  template void cross_entropy_shard_combine<T>(T*, T*, const T*, const int32_t*, int64_t, int); \
  template void cross_entropy_mean<T>(T*, T*, const T*, const int32_t*, int64_t);               \
  template void cross_entropy_fused<T>(T*, T*, T*, const int32_t*, int64_t, int64_t, int64_t,   \
                                       double);                                                 \
  template void cross_entropy_fused_rescale<T>(T*, const T*, int64_t);
TRIDENT_CROSS_ENTROPY_INSTANTIATE(float)
TRIDENT_CROSS_ENTROPY_INSTANTIATE(double)
#undef TRIDENT_CROSS_ENTROPY_INSTANTIATE

}  // namespace trident::kernels::cpu
