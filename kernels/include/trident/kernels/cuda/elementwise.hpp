// Element-wise and layout kernels on the GPU (same contracts as kernels/cpu/elementwise.hpp).
// Buffers are contiguous unless strides are given; strides and shapes are host arrays of
// `ndim` <= 8 entries, in elements.
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// out[i] = value for f32, bf16, f64, i32, i64 and u8 buffers.
void fill(ScalarType t, void* out, double value, int64_t n, cudaStream_t stream);
// Gathers a strided view into contiguous `out` (any element size: 1, 2, 4 or 8 bytes).
void copy_strided(ScalarType t, void* out, const void* in, const int64_t* in_strides,
                  const int64_t* shape, int ndim, cudaStream_t stream);
// out = (to) in for f32<->bf16, f32<->f64, i32->f32, and any type to itself.
void convert(ScalarType to, void* out, ScalarType from, const void* in, int64_t n,
             cudaStream_t stream);
// out[i] = a[ia] op b[ib] over `shape` (strides 0 where broadcast); out contiguous.
void binary_strided(BinaryOp op, ScalarType t, void* out, const void* a, const int64_t* a_strides,
                    const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
                    cudaStream_t stream);
// out = alpha * in (out may alias in); y += alpha * x.
void scale(ScalarType t, void* out, const void* in, float alpha, int64_t n, cudaStream_t stream);
void axpy(ScalarType t, void* y, const void* x, float alpha, int64_t n, cudaStream_t stream);

}  // namespace trident::kernels::cuda
