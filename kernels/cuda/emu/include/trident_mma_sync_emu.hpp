// Trident's CUDA emulation of the PTX warp-level matrix instructions that
// kernels/cuda/mma_sync.cuh wraps in inline asm on a GPU:
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32   d = a * b + d
//   ldmatrix.sync.aligned.m8n8.{x2,x4}{,.trans}.shared.b16
// Unlike nvcuda::wmma (mma.h), whose fragment layout CUDA leaves unspecified and the emulation
// randomises, the PTX ISA documents these layouts, so they are fixed here, exactly as documented
// (groupID g = lane >> 2, thread-in-group t = lane & 3; a 32-bit register holds two bf16, the
// lower column or k index in its low 16 bits):
//   A (16 x 16, row): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8,
//   2t+8..) B (16 x 8, col):  b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g) C/D (16 x 8
//   f32): d[0], d[1] = (g, 2t), (g, 2t+1); d[2], d[3] = (g+8, 2t), (g+8, 2t+1) ldmatrix: lane i
//   gives the address of row i % 8 of matrix i / 8 (8 bf16, 16 bytes); register j of lane l
//   receives matrix j's (row l / 4, cols 2(l % 4), 2(l % 4) + 1), or with .trans (rows 2(l % 4),
//   2(l % 4) + 1, col l / 4). .x2 reads the addresses of lanes 0..15 only.
// Both are warp-collective (all 32 lanes at the same call, else a deadlock or fault naming the
// call and line). mma sums d(r, c) + a(r, 0) b(0, c) + ... + a(r, 15) b(15, c) in float in that
// order (bf16 products are exact in float; tensor cores round differently). ldmatrix faults on a
// row address that is not 16-byte aligned or not in the block's shared memory.
#pragma once
#include <cstdint>

namespace cuemu::ptx {

void mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const char* file, int line);
// `matrices` is 2 or 4; r receives that many registers.
void ldmatrix(uint32_t* r, int matrices, bool trans, const void* row, const char* file, int line);

}  // namespace cuemu::ptx
