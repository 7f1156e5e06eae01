// Grouped-query attention's fused input (contract in gqa_pack.hpp). Each of the N rows is
// independent: forward copies q, then each kv head into its group of H / Hkv query heads;
// backward copies dq and sums each group's dk and dv in head order (deterministic).
#include "trident/kernels/cpu/gqa_pack.hpp"

#include <algorithm>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {

template <typename T>
void gqa_pack_forward(T* qkv, const T* q, const T* k, const T* v, int64_t N, int64_t H, int64_t Hkv,
                      int64_t D) {
  const int64_t C = H * D, Ckv = Hkv * D, group = H / Hkv;
#pragma omp parallel for schedule(static) if (N * 3 * C > detail::kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    T* row = qkv + n * 3 * C;
    std::copy(q + n * C, q + (n + 1) * C, row);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t src = n * Ckv + (h / group) * D;
      std::copy(k + src, k + src + D, row + C + h * D);
      std::copy(v + src, v + src + D, row + 2 * C + h * D);
    }
  }
}

template <typename T>
void gqa_pack_backward(T* dq, T* dk, T* dv, const T* dqkv, int64_t N, int64_t H, int64_t Hkv,
                       int64_t D) {
  const int64_t C = H * D, Ckv = Hkv * D, group = H / Hkv;
#pragma omp parallel for schedule(static) if (N * 3 * C > detail::kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    const T* row = dqkv + n * 3 * C;
    std::copy(row, row + C, dq + n * C);
    for (int64_t j = 0; j < Hkv; ++j) {
      T* gk = dk + n * Ckv + j * D;
      T* gv = dv + n * Ckv + j * D;
      const T* sk = row + C + j * group * D;
      const T* sv = row + 2 * C + j * group * D;
      std::copy(sk, sk + D, gk);
      std::copy(sv, sv + D, gv);
      for (int64_t r = 1; r < group; ++r) {
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) {
          gk[d] += sk[r * D + d];
          gv[d] += sv[r * D + d];
        }
      }
    }
  }
}

template void gqa_pack_forward<float>(float*, const float*, const float*, const float*, int64_t,
                                      int64_t, int64_t, int64_t);
template void gqa_pack_forward<double>(double*, const double*, const double*, const double*,
                                       int64_t, int64_t, int64_t, int64_t);
template void gqa_pack_backward<float>(float*, float*, float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t);
template void gqa_pack_backward<double>(double*, double*, double*, const double*, int64_t, int64_t,
                                        int64_t, int64_t);

}  // namespace trident::kernels::cpu
