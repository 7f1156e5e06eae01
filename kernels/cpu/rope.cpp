// Rotary position embeddings on inp (B, T, NH * D), rows contiguous (contract in rope.hpp).
// One (b, t) row at a time: the D/2 cos and sin of its position are computed once, then every
// head's pairs (x[i], x[i + D/2]) are rotated. Rows run in parallel; each pair is read before it
// is written, so out may alias inp.
#include "trident/kernels/cpu/rope.hpp"

#include <cmath>
#include <vector>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

// Hugging Face's f32 angle (see rope.hpp); pow in double is rounded once to f32, as the
// correctly rounded f32 power torch computes.
float rope_angle(int64_t p, int64_t i, int64_t D, double theta) {
  const float e = static_cast<float>(2 * i) / static_cast<float>(D);
  const float base = static_cast<float>(theta);
  const float inv_freq = 1.0f / static_cast<float>(std::pow(static_cast<double>(base), e));
  return static_cast<float>(p) * inv_freq;
}

}  // namespace

template <typename T>
void rope_forward(T* out, const T* inp, int64_t B, int64_t T_, int64_t NH, int64_t D, double theta,
                  int64_t position_offset, bool inverse) {
  const int64_t half = D / 2, rows = B * T_, width = NH * D;
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel if (rows * width > detail::kParallelGrain)
  {
    std::vector<T> cs(static_cast<size_t>(2 * half));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t p = position_offset + r % T_;
      for (int64_t i = 0; i < half; ++i) {
        const double a = rope_angle(p, i, D, theta);
        cs[static_cast<size_t>(i)] = static_cast<T>(std::cos(a));
        cs[static_cast<size_t>(half + i)] = sign * static_cast<T>(std::sin(a));
      }
      const T* c = cs.data();
      const T* s = cs.data() + half;
      for (int64_t h = 0; h < NH; ++h) {
        const T* x = inp + r * width + h * D;
        T* y = out + r * width + h * D;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = x[i], x2 = x[half + i];
          y[i] = x1 * c[i] - x2 * s[i];
          y[half + i] = x2 * c[i] + x1 * s[i];
        }
      }
    }
  }
}

template void rope_forward<float>(float*, const float*, int64_t, int64_t, int64_t, int64_t, double,
                                  int64_t, bool);
template void rope_forward<double>(double*, const double*, int64_t, int64_t, int64_t, int64_t,
                                   double, int64_t, bool);

}  // namespace trident::kernels::cpu
