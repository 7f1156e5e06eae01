// SwiGLU's gate, elementwise over n: s = sigmoid(g) = 1 / (1 + exp(-g)), out = g s up.
// Backward: dgate = dout up s (1 + g (1 - s)), dup = dout g s. exp(-g) overflows to inf for
// g < -88 (f32), giving s = 0 and silu = -0: the limits, with no NaN.
#include "trident/kernels/cpu/swiglu.hpp"

#include <cmath>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T s = T(1) / (T(1) + std::exp(-g));
    out[i] = g * s * up[i];
  }
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* gate, const T* up, const T* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > detail::kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i], dy = dout[i];
    const T s = T(1) / (T(1) + std::exp(-g));
    dgate[i] = dy * up[i] * (s * (T(1) + g * (T(1) - s)));
    dup[i] = dy * g * s;
  }
}

template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*,
                                     int64_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*,
                                      int64_t);

}  // namespace trident::kernels::cpu
