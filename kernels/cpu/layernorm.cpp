// Layer normalisation over the last dimension of inp (N, C), rows contiguous.
// Forward: mean = sum(x)/C, var = sum((x-mean)^2)/C (two passes, biased), rstd = 1/sqrt(var+eps),
// out = (x-mean)*rstd*weight + bias; mean (N) and rstd (N) are saved in T (f32 for bf16 rows).
// Backward, with norm = (x-mean)*rstd and dnorm = dout*weight:
//   dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm*norm)),
//   dweight = sum_rows dout*norm, dbias = sum_rows dout.
// Rows run in parallel; dweight/dbias are summed into per-thread double buffers that are then
// added in thread order (deterministic for a given thread count).
// Fused residual + layer norm: residual = x + delta is written and normalised in the same row
// pass; its backward adds the residual stream's gradient into dinp in the same write.
#include "trident/kernels/cpu/layernorm.hpp"

#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu_common.hpp"
#include "trident/kernels/cpu/convert.hpp"

namespace trident::kernels::cpu {

namespace {

// Normalises one row x (C) into y; returns its mean and rstd.
template <typename T>
void layernorm_row(T* y, T& mean, T& rstd, const T* x, const T* weight, const T* bias, int64_t C,
                   T eps) {
  const T inv_c = T(1) / static_cast<T>(C);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < C; ++c) s += x[c];
  const T m = s * inv_c;
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
  const T rs = T(1) / std::sqrt(v * inv_c + eps);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * rs * weight[c] + bias[c];
  mean = m;
  rstd = rs;
}

template <typename T>
T round_to_bf16(T x) {
  return static_cast<T>(bf16_to_f32(f32_to_bf16(static_cast<float>(x))));
}

// layernorm_backward, plus dresidual (when not null) added into dinp.
template <typename T>
void layernorm_backward_impl(T* dinp, T* dweight, T* dbias, const T* dresidual, const T* dout,
                             const T* inp, const T* weight, const T* mean, const T* rstd, int64_t N,
                             int64_t C) {
  const int threads = N * C > detail::kParallelGrain ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads) * 2 * C, 0.0);
  const T inv_c = T(1) / static_cast<T>(C);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    double* pw = partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C;
    double* pb = pw + C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* dy = dout + n * C;
      T* dx = dinp + n * C;
      const T m = mean[n], rs = rstd[n];
      T dnorm_sum = 0, dnorm_norm_sum = 0;
#pragma omp simd reduction(+ : dnorm_sum, dnorm_norm_sum)
      for (int64_t c = 0; c < C; ++c) {
        const T dnorm = dy[c] * weight[c];
        dnorm_sum += dnorm;
        dnorm_norm_sum += dnorm * (x[c] - m) * rs;
      }
      const T dnorm_mean = dnorm_sum * inv_c, dnorm_norm_mean = dnorm_norm_sum * inv_c;
      if (dresidual == nullptr) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const T norm = (x[c] - m) * rs;
          dx[c] = rs * (dy[c] * weight[c] - dnorm_mean - norm * dnorm_norm_mean);
          pw[c] += static_cast<double>(dy[c] * norm);
          pb[c] += static_cast<double>(dy[c]);
        }
      } else {
        // dres and dx may be one buffer: each element is read before it is written.
        const T* dres = dresidual + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const T norm = (x[c] - m) * rs;
          dx[c] = dres[c] + rs * (dy[c] * weight[c] - dnorm_mean - norm * dnorm_norm_mean);
          pw[c] += static_cast<double>(dy[c] * norm);
          pb[c] += static_cast<double>(dy[c]);
        }
      }
    }
  }
#pragma omp parallel for schedule(static) if (threads > 1 && C > 4096)
  for (int64_t c = 0; c < C; ++c) {
    double w = 0, b = 0;
    for (int t = 0; t < threads; ++t) {
      w += partial[static_cast<size_t>(t) * 2 * C + c];
      b += partial[static_cast<size_t>(t) * 2 * C + C + c];
    }
    dweight[c] = static_cast<T>(w);
    dbias[c] = static_cast<T>(b);
  }
}

}  // namespace

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int64_t N, int64_t C, T eps) {
#pragma omp parallel for schedule(static) if (N * C > detail::kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    layernorm_row(out + n * C, mean[n], rstd[n], inp + n * C, weight, bias, C, eps);
  }
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int64_t N, int64_t C) {
  layernorm_backward_impl<T>(dinp, dweight, dbias, nullptr, dout, inp, weight, mean, rstd, N, C);
}

template <typename T>
void residual_layernorm_forward(T* residual, T* out, T* mean, T* rstd, const T* x, const T* delta,
                                const T* weight, const T* bias, int64_t N, int64_t C, T eps,
                                bool round_residual_to_bf16) {
#pragma omp parallel for schedule(static) if (N * C > detail::kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    T* r = residual + n * C;
    const T* a = x + n * C;
    const T* d = delta + n * C;
    if (round_residual_to_bf16) {
      for (int64_t c = 0; c < C; ++c) r[c] = round_to_bf16(a[c] + d[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) r[c] = a[c] + d[c];
    }
    layernorm_row(out + n * C, mean[n], rstd[n], r, weight, bias, C, eps);
  }
}

template <typename T>
void residual_layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dresidual, const T* dout,
                                 const T* residual, const T* weight, const T* mean, const T* rstd,
                                 int64_t N, int64_t C) {
  layernorm_backward_impl<T>(dinp, dweight, dbias, dresidual, dout, residual, weight, mean, rstd, N,
                             C);
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*,
                                       const float*, int64_t, int64_t, float);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*,
                                        const double*, int64_t, int64_t, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int64_t, int64_t);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, int64_t,
                                         int64_t);
template void residual_layernorm_forward<float>(float*, float*, float*, float*, const float*,
                                                const float*, const float*, const float*, int64_t,
                                                int64_t, float, bool);
template void residual_layernorm_forward<double>(double*, double*, double*, double*, const double*,
                                                 const double*, const double*, const double*,
                                                 int64_t, int64_t, double, bool);
template void residual_layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                                 const float*, const float*, const float*,
                                                 const float*, int64_t, int64_t);
template void residual_layernorm_backward<double>(double*, double*, double*, const double*,
                                                  const double*, const double*, const double*,
                                                  const double*, const double*, int64_t, int64_t);

}  // namespace trident::kernels::cpu
