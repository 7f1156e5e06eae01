// Softmax cross entropy fused with log-softmax; probabilities are never stored.
// logits (N, V) row-major, targets (N) int32 (< 0: ignored row, loss 0 and gradient 0).
// Forward: lse = max + log(sum exp(x - max)) (max-subtracted, stable), loss = lse - x[target].
// Backward: dlogits[i, j] = (exp(x[i, j] - lse[i]) - [j == target]) * dlosses[i].
// Rows run in parallel; targets are validated up front, before any thread starts.
#include "trident/kernels/cpu/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
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

}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V) {
  check_targets("cross_entropy_forward", targets, N, V);
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    ConstArrayMap<T> x(logits + i * V, V);
    const T mx = x.maxCoeff();
    const T l = mx + std::log((x - mx).exp().sum());
    lse[i] = l;
    losses[i] = targets[i] < 0 ? T(0) : l - x[targets[i]];
  }
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            const T* dlosses, int64_t N, int64_t V) {
  check_targets("cross_entropy_backward", targets, N, V);
#pragma omp parallel for schedule(static) if (N * V > detail::kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    ArrayMap<T> dx(dlogits + i * V, V);
    const int32_t t = targets[i];
    if (t < 0) {
      dx.setZero();
      continue;
    }
    ConstArrayMap<T> x(logits + i * V, V);
    const T dl = dlosses[i];
    dx = (x - lse[i]).exp() * dl;
    dx[t] -= dl;
  }
}

template void cross_entropy_forward<float>(float*, float*, const float*, const int32_t*, int64_t,
                                           int64_t);
template void cross_entropy_forward<double>(double*, double*, const double*, const int32_t*,
                                            int64_t, int64_t);
template void cross_entropy_backward<float>(float*, const float*, const float*, const int32_t*,
                                            const float*, int64_t, int64_t);
template void cross_entropy_backward<double>(double*, const double*, const double*, const int32_t*,
                                             const double*, int64_t, int64_t);

}  // namespace trident::kernels::cpu
