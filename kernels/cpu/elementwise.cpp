// Element-wise, broadcast and reduction kernels on raw buffers.
// Strided kernels (binary_strided, copy_strided) first coalesce the index space: size-1
// dimensions are dropped and neighbours that are contiguous in every operand merge, so a
// contiguous or row-broadcast operation becomes one or two dimensions with a long inner loop.
// The flat output range is then split evenly over threads; each thread walks an index counter
// over the outer dimensions and runs a tight loop over the last one, specialised for the
// contiguous and stride-0 (broadcast) cases. Reductions accumulate in double.
#include "trident/kernels/cpu/elementwise.hpp"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

using detail::kParallelGrain;
constexpr int kMaxDims = 8;

void check_ndim(const char* who, int ndim) {
  if (ndim < 0 || ndim > kMaxDims) {
    throw std::invalid_argument(std::string(who) + ": ndim = " + std::to_string(ndim) +
                                " is outside [0, 8]; reshape the tensor to at most 8 dimensions");
  }
}

// An index space of `ndim` dimensions traversed in row-major order by a contiguous output and
// NIn strided inputs.
template <int NIn>
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[NIn][kMaxDims];
};

// Drops size-1 dimensions and merges neighbours (d-1, d) where every input has
// stride[d-1] == stride[d] * shape[d] (the output is contiguous, so it always qualifies).
template <int NIn>
StridedLayout<NIn> coalesce(const int64_t* shape, int ndim, const int64_t* const* strides) {
  StridedLayout<NIn> L;
  int n = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      bool mergeable = true;
      for (int j = 0; j < NIn; ++j) mergeable &= L.strides[j][n - 1] == strides[j][d] * shape[d];
      if (mergeable) {
        L.shape[n - 1] *= shape[d];
        for (int j = 0; j < NIn; ++j) L.strides[j][n - 1] = strides[j][d];
        continue;
      }
    }
    L.shape[n] = shape[d];
    for (int j = 0; j < NIn; ++j) L.strides[j][n] = strides[j][d];
    ++n;
  }
  if (n == 0) {  // a scalar, or only size-1 dimensions
    L.shape[0] = 1;
    for (int j = 0; j < NIn; ++j) L.strides[j][0] = 0;
    n = 1;
  }
  L.ndim = n;
  return L;
}

int64_t numel(const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0) throw std::invalid_argument("negative dimension " + std::to_string(shape[d]));
    n *= shape[d];
  }
  return n;
}

// Calls segment(out_offset, in_offsets, count) for runs of `count` elements along the last
// dimension, covering [0, total) once. Threads get equal contiguous slices of the output.
template <int NIn, typename Segment>
void for_each_segment(const StridedLayout<NIn>& L, int64_t total, Segment segment) {
  const int nd = L.ndim;
  const int64_t inner = L.shape[nd - 1];
#pragma omp parallel if (total > kParallelGrain)
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t begin = total / nt * tid + std::min(tid, total % nt);
    const int64_t end = begin + total / nt + (tid < total % nt ? 1 : 0);
    int64_t idx[kMaxDims];
    int64_t off[NIn] = {};
    int64_t rem = begin;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = rem % L.shape[d];
      rem /= L.shape[d];
      for (int j = 0; j < NIn; ++j) off[j] += idx[d] * L.strides[j][d];
    }
    for (int64_t pos = begin; pos < end;) {
      const int64_t count = std::min(inner - idx[nd - 1], end - pos);
      segment(pos, static_cast<const int64_t*>(off), count);
      pos += count;
      idx[nd - 1] += count;
      for (int j = 0; j < NIn; ++j) off[j] += count * L.strides[j][nd - 1];
      for (int d = nd - 1; d > 0 && idx[d] == L.shape[d]; --d) {
        idx[d] = 0;
        ++idx[d - 1];
        for (int j = 0; j < NIn; ++j) off[j] += L.strides[j][d - 1] - L.shape[d] * L.strides[j][d];
      }
    }
  }
}

struct AddOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a / b;
  }
};

template <typename T, typename Op>
void binary_run(Op op, T* out, const T* a, const T* b, const StridedLayout<2>& L, int64_t total) {
  const int64_t sa = L.strides[0][L.ndim - 1], sb = L.strides[1][L.ndim - 1];
  for_each_segment<2>(L, total, [&](int64_t o, const int64_t* off, int64_t n) {
    T* y = out + o;
    const T* x = a + off[0];
    const T* z = b + off[1];
    if (sa == 1 && sb == 1) {
      for (int64_t i = 0; i < n; ++i) y[i] = op(x[i], z[i]);
    } else if (sa == 1 && sb == 0) {
      const T zv = *z;
      for (int64_t i = 0; i < n; ++i) y[i] = op(x[i], zv);
    } else if (sa == 0 && sb == 1) {
      const T xv = *x;
      for (int64_t i = 0; i < n; ++i) y[i] = op(xv, z[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = op(x[i * sa], z[i * sb]);
    }
  });
}

// out[k] = sum over the reduced dimensions of in, for in contiguous of shape `shape` after
// coalescing (adjacent dimensions with the same reduce flag merged, size-1 dimensions dropped).
template <typename T>
void reduce_run(T* out, const T* in, const int64_t* shape, const bool* reduced, int nd) {
  int64_t in_stride[kMaxDims];
  int64_t stride = 1;
  for (int d = nd - 1; d >= 0; --d) {
    in_stride[d] = stride;
    stride *= shape[d];
  }
  const bool last_reduced = reduced[nd - 1];
  const int64_t inner = shape[nd - 1];
  // Outer dimensions (all but the last), split into kept (indexed by the output) and reduced.
  int nk = 0, nr = 0;
  int64_t kshape[kMaxDims], kstride[kMaxDims], rshape[kMaxDims], rstride[kMaxDims];
  int64_t n_combos = 1, n_rows = 1;
  for (int d = 0; d < nd - 1; ++d) {
    if (reduced[d]) {
      rshape[nr] = shape[d];
      rstride[nr++] = in_stride[d];
      n_combos *= shape[d];
    } else {
      kshape[nk] = shape[d];
      kstride[nk++] = in_stride[d];
      n_rows *= shape[d];
    }
  }
  const auto row_base = [&](int64_t row) {
    int64_t base = 0;
    for (int d = nk - 1; d >= 0; --d) {
      base += (row % kshape[d]) * kstride[d];
      row /= kshape[d];
    }
    return base;
  };
  // Visits the input offset of every combination of the reduced outer dimensions, in order.
  const auto for_each_combo = [&](int64_t base, auto&& visit) {
    int64_t idx[kMaxDims] = {};
    int64_t off = base;
    for (int64_t c = 0; c < n_combos; ++c) {
      visit(off);
      for (int d = nr - 1; d >= 0; --d) {
        off += rstride[d];
        if (++idx[d] < rshape[d]) break;
        off -= rshape[d] * rstride[d];
        idx[d] = 0;
      }
    }
  };
  const bool parallel = n_rows * n_combos * inner > kParallelGrain;
  if (last_reduced) {
    // Each output element sums n_combos contiguous lines of `inner` elements.
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t row = 0; row < n_rows; ++row) {
      double acc = 0.0;
      for_each_combo(row_base(row), [&](int64_t off) {
        const T* x = in + off;
        double line = 0.0;
#pragma omp simd reduction(+ : line)
        for (int64_t i = 0; i < inner; ++i) line += static_cast<double>(x[i]);
        acc += line;
      });
      out[row] = static_cast<T>(acc);
    }
  } else {
    // Each output row of `inner` elements adds n_combos contiguous input lines, in column
    // chunks so that threads also split a single row (a bias gradient) and the accumulator
    // stays in L1. With fewer rows than threads the chunks shrink (down to 16 elements) until
    // every thread has one.
    constexpr int64_t kMaxChunk = 512;
    int64_t chunk = kMaxChunk;
    const int64_t threads = parallel ? omp_get_max_threads() : 1;
    if (n_rows < threads) {
      const int64_t per_thread = (inner * n_rows + threads - 1) / threads;
      chunk = std::clamp<int64_t>((per_thread + 15) / 16 * 16, 16, kMaxChunk);
    }
    const int64_t n_chunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t work = 0; work < n_rows * n_chunks; ++work) {
      const int64_t row = work / n_chunks, c0 = (work % n_chunks) * chunk;
      const int64_t len = std::min(chunk, inner - c0);
      double acc[kMaxChunk];
      std::fill(acc, acc + len, 0.0);
      for_each_combo(row_base(row) + c0, [&](int64_t off) {
        const T* x = in + off;
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) acc[i] += static_cast<double>(x[i]);
      });
      T* y = out + row * inner + c0;
      for (int64_t i = 0; i < len; ++i) y[i] = static_cast<T>(acc[i]);
    }
  }
}

}  // namespace

template <typename T>
void binary_strided(BinaryOp op, T* out, const T* a, const int64_t* a_strides, const T* b,
                    const int64_t* b_strides, const int64_t* shape, int ndim) {
  check_ndim("binary_strided", ndim);
  const int64_t total = numel(shape, ndim);
  if (total == 0) return;
  const int64_t* strides[2] = {a_strides, b_strides};
  const StridedLayout<2> L = coalesce<2>(shape, ndim, strides);
  switch (op) {
    case BinaryOp::Add:
      binary_run(AddOp{}, out, a, b, L, total);
      return;
    case BinaryOp::Sub:
      binary_run(SubOp{}, out, a, b, L, total);
      return;
    case BinaryOp::Mul:
      binary_run(MulOp{}, out, a, b, L, total);
      return;
    case BinaryOp::Div:
      binary_run(DivOp{}, out, a, b, L, total);
      return;
  }
  throw std::invalid_argument("binary_strided: unknown BinaryOp " +
                              std::to_string(static_cast<int>(op)));
}

template <typename T>
void copy_strided(T* out, const T* in, const int64_t* in_strides, const int64_t* shape, int ndim) {
  check_ndim("copy_strided", ndim);
  const int64_t total = numel(shape, ndim);
  if (total == 0) return;
  const int64_t* strides[1] = {in_strides};
  const StridedLayout<1> L = coalesce<1>(shape, ndim, strides);
  const int64_t s = L.strides[0][L.ndim - 1];
  for_each_segment<1>(L, total, [&](int64_t o, const int64_t* off, int64_t n) {
    T* y = out + o;
    const T* x = in + off[0];
    if (s == 1) {
      std::copy(x, x + n, y);
    } else if (s == 0) {
      std::fill(y, y + n, *x);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = x[i * s];
    }
  });
}

template <typename T>
void reduce_sum_to(T* out, const T* in, const int64_t* shape, const bool* reduce_dim, int ndim) {
  check_ndim("reduce_sum_to", ndim);
  const int64_t total = numel(shape, ndim);
  int64_t n_out = 1;
  for (int d = 0; d < ndim; ++d) n_out *= reduce_dim[d] ? 1 : shape[d];
  if (total == 0) {  // an empty reduced dimension sums to zero
    std::fill(out, out + n_out, T(0));
    return;
  }
  // Coalesce: drop size-1 dims, merge neighbours with the same flag (`in` is contiguous and so
  // is `out` over the kept dimensions).
  int64_t cshape[kMaxDims];
  bool creduced[kMaxDims];
  int nd = 0;
  bool any_reduced = false;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    any_reduced |= reduce_dim[d];
    if (nd > 0 && creduced[nd - 1] == reduce_dim[d]) {
      cshape[nd - 1] *= shape[d];
    } else {
      cshape[nd] = shape[d];
      creduced[nd++] = reduce_dim[d];
    }
  }
  if (!any_reduced) {
    std::copy(in, in + total, out);
  } else if (nd == 1) {
    out[0] = static_cast<T>(sum(in, total));
  } else {
    reduce_run(out, in, cshape, creduced, nd);
  }
}

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void scale(T* out, const T* in, T alpha, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * in[i];
}

template <typename T>
void axpy(T* y, const T* x, T alpha, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename T>
void fill(T* out, T value, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

template <typename T>
void add_bias(T* out, const T* in, const T* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    T* y = out + r * cols;
    const T* x = in + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) y[c] = x[c] + bias[c];
  }
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int64_t rows, int64_t cols) {
  const int64_t shape[2] = {rows, cols};
  const bool reduced[2] = {true, false};
  reduce_sum_to(dbias, dout, shape, reduced, 2);
}

template <typename T>
double sum(const T* x, int64_t n) {
  double acc = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : acc) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]);
  return acc;
}

template <typename T>
double sum_squares(const T* x, int64_t n) {
  double acc = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : acc) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    acc += v * v;
  }
  return acc;
}

template <typename To, typename From>
void convert(To* out, const From* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<To>(in[i]);
}

#define TRIDENT_INSTANTIATE_ELEMENTWISE(T)                                          \
  template void binary_strided<T>(BinaryOp, T*, const T*, const int64_t*, const T*, \
                                  const int64_t*, const int64_t*, int);             \
  template void copy_strided<T>(T*, const T*, const int64_t*, const int64_t*, int); \
  template void reduce_sum_to<T>(T*, const T*, const int64_t*, const bool*, int);   \
  template void add<T>(T*, const T*, const T*, int64_t);                            \
  template void scale<T>(T*, const T*, T, int64_t);                                 \
  template void axpy<T>(T*, const T*, T, int64_t);                                  \
  template void fill<T>(T*, T, int64_t);                                            \
  template void add_bias<T>(T*, const T*, const T*, int64_t, int64_t);              \
  template void bias_backward<T>(T*, const T*, int64_t, int64_t);                   \
  template double sum<T>(const T*, int64_t);                                        \
  template double sum_squares<T>(const T*, int64_t);
TRIDENT_INSTANTIATE_ELEMENTWISE(float)
TRIDENT_INSTANTIATE_ELEMENTWISE(double)
#undef TRIDENT_INSTANTIATE_ELEMENTWISE

template void convert<float, double>(float*, const double*, int64_t);
template void convert<double, float>(double*, const float*, int64_t);

}  // namespace trident::kernels::cpu
