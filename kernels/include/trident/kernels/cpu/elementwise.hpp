// Element-wise and broadcast kernels. All buffers contiguous unless strides are given.
// Backward kernels overwrite their outputs (=); the autograd engine accumulates.
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// out[i] = a[ia] op b[ib] over an ndim-dimensional index space `shape` (ndim <= 8);
// a_strides/b_strides are element strides per dimension (0 where broadcast).
// `out` is contiguous with the given shape.
template <typename T>
void binary_strided(BinaryOp op, T* out, const T* a, const int64_t* a_strides, const T* b,
                    const int64_t* b_strides, const int64_t* shape, int ndim);

// Copies a strided view into a contiguous buffer (used by Tensor::contiguous()).
template <typename T>
void copy_strided(T* out, const T* in, const int64_t* in_strides, const int64_t* shape, int ndim);

// Sums `in` (contiguous, shape `shape`) into `out`, whose shape is `shape` with some
// dimensions reduced to 1 (reduce_dim[d] == true means dimension d is summed away); `out` is
// contiguous. Accumulates in double. Overwrites `out`.
template <typename T>
void reduce_sum_to(T* out, const T* in, const int64_t* shape, const bool* reduce_dim, int ndim);

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void scale(T* out, const T* in, T alpha, int64_t n);  // out = alpha*in
template <typename T>
void axpy(T* y, const T* x, T alpha, int64_t n);  // y += alpha*x
template <typename T>
void fill(T* out, T value, int64_t n);
// out[r, c] = in[r, c] + bias[c] for rows x cols (in may alias out).
template <typename T>
void add_bias(T* out, const T* in, const T* bias, int64_t rows, int64_t cols);
// dbias[c] = sum_r dout[r, c].
template <typename T>
void bias_backward(T* dbias, const T* dout, int64_t rows, int64_t cols);
// Sum of all elements and sum of squares, accumulated in double.
template <typename T>
double sum(const T* x, int64_t n);
template <typename T>
double sum_squares(const T* x, int64_t n);
// Converts between element types (f32 <-> f64), used for gradient checks and checkpoints.
template <typename To, typename From>
void convert(To* out, const From* in, int64_t n);

}  // namespace trident::kernels::cpu
