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
// y[i] += (to) x[i] for f32 and bf16 (any pair), bitwise convert() then axpy() with alpha 1:
// x rounded to `to`, then one f32 add rounded to `to`. y and x must not overlap.
void accumulate_converted(ScalarType to, void* y, ScalarType from, const void* x, int64_t n,
                          cudaStream_t stream);
// out[i] = a[ia] op b[ib] over `shape` (strides 0 where broadcast); out contiguous.
void binary_strided(BinaryOp op, ScalarType t, void* out, const void* a, const int64_t* a_strides,
                    const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
                    cudaStream_t stream);
// out = alpha * in (out may alias in); y += alpha * x.
void scale(ScalarType t, void* out, const void* in, float alpha, int64_t n, cudaStream_t stream);
void axpy(ScalarType t, void* y, const void* x, float alpha, int64_t n, cudaStream_t stream);

// Many f32 -> bf16 conversions in ONE launch (the step's bf16 working copies of the f32 master
// weights): the tensors are listed in a table in device memory, written once per tensor set
// (convert_table_upload, as the optimizer's table) and reused, so every step's launch has the
// same arguments (a CUDA graph replays it). Block b converts chunk b (kConvertChunk elements of
// the entry whose chunks hold it); each element is bitwise what convert() gives.
inline constexpr int64_t kConvertChunk = 8192;  // a multiple of 4: chunks keep 16-byte alignment
struct ConvertEntry {
  const float* src = nullptr;
  void* dst = nullptr;  // bf16
  int64_t n = 0;
  int64_t first_chunk = 0;  // set by convert_table_chunks
};
// Sets entries[i].first_chunk (host array); returns the table's chunks (the launch's blocks).
int64_t convert_table_chunks(ConvertEntry* entries, int count);
// Copies `count` host entries into `table` (device), queued on the stream; throws while the
// stream is being captured (the table must be written before a capture).
void convert_table_upload(ConvertEntry* table, const ConvertEntry* entries, int count,
                          cudaStream_t stream);
void convert_f32_to_bf16_table(const ConvertEntry* table, int count, int64_t chunks,
                               cudaStream_t stream);

}  // namespace trident::kernels::cuda
