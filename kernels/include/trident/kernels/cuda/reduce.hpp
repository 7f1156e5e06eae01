// Deterministic reductions on the GPU: the same inputs give bitwise the same result on every
// run (fixed grid sizes that depend only on the sizes, fixed reduction trees, no float atomics).
#pragma once
#include "trident/kernels/cuda/common.hpp"

namespace trident::kernels::cuda {

// *out_dev (a device double) = sum of x, or of x^2 when `squares`; accumulated in double in two
// passes (per-block partials, then one block over the partials in order).
void sum(ScalarType t, const void* x, int64_t n, bool squares, double* out_dev, Scratch& scratch,
         cudaStream_t stream);
// *out_dev = sum over `count` buffers of sum(x_i^2) (the global gradient norm squared); xs and
// ns are host arrays. One launch per 64 buffers, one final pass.
void sum_squares_multi(ScalarType t, const void* const* xs, const int64_t* ns, int count,
                       double* out_dev, Scratch& scratch, cudaStream_t stream);
// out[c] = sum_r in[r, c] for in (rows, cols) row-major: per-chunk column partials, then a
// second pass over the chunks in order.
void sum_rows(ScalarType t, void* out, const void* in, int64_t rows, int64_t cols, Scratch& scratch,
              cudaStream_t stream);
// Sums contiguous `in` of shape `shape` over the dimensions with reduce_dim[d] into contiguous
// `out` (as kernels/cpu reduce_sum_to). Overwrites out.
void reduce_sum_to(ScalarType t, void* out, const void* in, const int64_t* shape,
                   const bool* reduce_dim, int ndim, Scratch& scratch, cudaStream_t stream);

}  // namespace trident::kernels::cuda
