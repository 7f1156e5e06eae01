// RMS normalisation over the last dimension of inp (N, C), rows contiguous.
// Forward: rstd = 1/sqrt(sum(x^2)/C + eps), out = (x * rstd) * weight; rstd (N) is saved in T
// (f32 for bf16 rows).
// Backward, with norm = x * rstd and dnorm = dout * weight:
//   dinp = rstd * (dnorm - norm * mean(dnorm * norm)),   dweight = sum_rows dout * norm.
// Rows run in parallel; dweight is summed into per-thread double buffers that are then added in
// thread order (deterministic for a given thread count), as layer norm's.
#include "trident/kernels/cpu/rms_norm.hpp"

#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {

template <typename T>
void rms_norm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, T eps) {
  const T inv_c = T(1) / static_cast<T>(C);
#pragma omp parallel for schedule(static) if (N * C > detail::kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    T* y = out + n * C;
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
    const T rs = T(1) / std::sqrt(ss * inv_c + eps);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) y[c] = (x[c] * rs) * weight[c];
    rstd[n] = rs;
  }
}

template <typename T>
void rms_norm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                       const T* rstd, int64_t N, int64_t C) {
  const int threads = N * C > detail::kParallelGrain ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads) * C, 0.0);
  const T inv_c = T(1) / static_cast<T>(C);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    double* pw = partial.data() + static_cast<size_t>(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      T* dx = dinp + n * C;
      const T rs = rstd[n];
      T dnorm_norm_sum = 0;
#pragma omp simd reduction(+ : dnorm_norm_sum)
      for (int64_t c = 0; c < C; ++c) dnorm_norm_sum += dy[c] * weight[c] * (x[c] * rs);
      const T dnorm_norm_mean = dnorm_norm_sum * inv_c;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T norm = x[c] * rs;
        dx[c] = rs * (dy[c] * weight[c] - norm * dnorm_norm_mean);
        pw[c] += static_cast<double>(dy[c] * norm);
      }
    }
  }
#pragma omp parallel for schedule(static) if (threads > 1 && C > 4096)
  for (int64_t c = 0; c < C; ++c) {
    double w = 0;
    for (int t = 0; t < threads; ++t) w += partial[static_cast<size_t>(t) * C + c];
    dweight[c] = static_cast<T>(w);
  }
}

template void rms_norm_forward<float>(float*, float*, const float*, const float*, int64_t, int64_t,
                                      float);
template void rms_norm_forward<double>(double*, double*, const double*, const double*, int64_t,
                                       int64_t, double);
template void rms_norm_backward<float>(float*, float*, const float*, const float*, const float*,
                                       const float*, int64_t, int64_t);
template void rms_norm_backward<double>(double*, double*, const double*, const double*,
                                        const double*, const double*, int64_t, int64_t);

}  // namespace trident::kernels::cpu
