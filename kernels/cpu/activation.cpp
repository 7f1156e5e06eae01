// GELU (tanh approximation) and row softmax. Transcendentals go through Eigen array
// expressions, which vectorise exp for float and double.
// GELU: u = k (x + a x^3), k = sqrt(2/pi), a = 0.044715; y = x (1 + tanh u) / 2.
//   Evaluated as y = x s with s = (1 + tanh u) / 2 = sigmoid(2u) = 1 / (1 + e), e = exp(-2u):
//   same function, but no cancellation in 1 + tanh u as u -> -inf, so the negative tail keeps
//   full relative precision in float. dy/dx = s + 2 x s (1 - s) k (1 + 3 a x^2), 1 - s = e s.
//   e is computed from min(-2u, 80) so that e s stays finite (the clamp changes s by < 1e-34).
// Softmax over rows (rows, cols) contiguous: y = exp(x - max) / sum; dx = y (dy - <dy, y>).
#include "trident/kernels/cpu/activation.hpp"

#include <algorithm>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

using detail::ArrayMap;
using detail::ConstArrayMap;
using detail::kParallelGrain;

// Elements per GELU work item: the backward scratch (2 chunks) stays in L1/L2.
constexpr int64_t kGeluChunk = 1024;

template <typename T>
constexpr T kGeluK = T(0.7978845608028654);  // sqrt(2/pi)
template <typename T>
constexpr T kGeluA = T(0.044715);

}  // namespace

// exp(-2u), clamped so that exp(...) * s never becomes inf * 0.
template <typename T, typename X>
auto gelu_exp(const X& x) {
  return (T(-2) * kGeluK<T> * (x + kGeluA<T> * x.cube())).min(T(80)).exp();
}

template <typename T>
void gelu_forward(T* out, const T* inp, int64_t n) {
  const int64_t n_chunks = (n + kGeluChunk - 1) / kGeluChunk;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    const int64_t off = chunk * kGeluChunk, len = std::min(kGeluChunk, n - off);
    ConstArrayMap<T> x(inp + off, len);
    ArrayMap<T> y(out + off, len);
    y = x / (T(1) + gelu_exp<T>(x));
  }
}

template <typename T>
void gelu_backward(T* dinp, const T* inp, const T* dout, int64_t n) {
  const int64_t n_chunks = (n + kGeluChunk - 1) / kGeluChunk;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    const int64_t off = chunk * kGeluChunk, len = std::min(kGeluChunk, n - off);
    ConstArrayMap<T> x(inp + off, len);
    ConstArrayMap<T> dy(dout + off, len);
    ArrayMap<T> dx(dinp + off, len);
    alignas(64) T e_buf[kGeluChunk];
    alignas(64) T s_buf[kGeluChunk];
    ArrayMap<T> e(e_buf, len), s(s_buf, len);
    e = gelu_exp<T>(x);
    s = (T(1) + e).inverse();
    dx = dy * s * (T(1) + T(2) * kGeluK<T> * x * e * s * (T(1) + T(3) * kGeluA<T> * x.square()));
  }
}

template <typename T>
void softmax_forward(T* out, const T* inp, int64_t rows, int64_t cols) {
  if (cols == 0) return;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    ConstArrayMap<T> x(inp + r * cols, cols);
    ArrayMap<T> y(out + r * cols, cols);
    const T mx = x.maxCoeff();
    y = (x - mx).exp();
    y *= T(1) / y.sum();
  }
}

template <typename T>
void softmax_backward(T* dinp, const T* out, const T* dout, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    ConstArrayMap<T> y(out + r * cols, cols);
    ConstArrayMap<T> dy(dout + r * cols, cols);
    ArrayMap<T> dx(dinp + r * cols, cols);
    const T dot = (dy * y).sum();
    dx = y * (dy - dot);
  }
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);
template void softmax_forward<float>(float*, const float*, int64_t, int64_t);
template void softmax_forward<double>(double*, const double*, int64_t, int64_t);
template void softmax_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward<double>(double*, const double*, const double*, int64_t, int64_t);

}  // namespace trident::kernels::cpu
