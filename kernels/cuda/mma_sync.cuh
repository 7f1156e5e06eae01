// Warp-level tensor-core primitives with the PTX ISA's documented register layouts, for kernels
// that keep matrix fragments in registers (FlashAttention-2 style: a product's accumulator
// becomes the next product's A operand without a trip through shared memory), which
// nvcuda::wmma's unspecified fragment layout does not allow.
//
//   mma_m16n8k16(d, a, b)   d (16 x 8, f32) += a (16 x 16, bf16) * b (16 x 8, bf16)
//                           mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
//   ldmatrix_x4 / _x2       ldmatrix.sync.aligned.m8n8.{x4,x2}.shared.b16
//   ldmatrix_x4_trans / _x2_trans                        ... .trans
//   pack_bf16(lo, hi)       two floats -> one register of two bf16 (round to nearest even)
//
// Layouts (g = lane >> 2, t = lane & 3; a register's lower column / k index in its low 16 bits):
//   A: a[0] = (row g, cols 2t, 2t+1), a[1] = (row g+8, same), a[2] = (row g, cols 2t+8, 2t+9),
//      a[3] = (row g+8, cols 2t+8, 2t+9)
//   B (k x n): b[0] = (k 2t, 2t+1; n g), b[1] = (k 2t+8, 2t+9; n g)
//   C/D: d[0], d[1] = (row g; cols 2t, 2t+1), d[2], d[3] = (row g+8; cols 2t, 2t+1)
//   So the accumulators of two adjacent n8 tiles, packed pairwise to bf16, are an A fragment of
//   k16: {pack(d0[0], d0[1]), pack(d0[2], d0[3]), pack(d1[0], d1[1]), pack(d1[2], d1[3])}.
//   ldmatrix: lane i gives the row address of row i % 8 of matrix i / 8 (8 bf16 = 16 bytes,
//   16-byte aligned, shared memory; .x2 reads lanes 0..15); register j of lane l receives matrix
//   j's (row l / 4, cols 2(l % 4), +1), or with .trans (rows 2(l % 4), +1; col l / 4).
//   An A tile (16 x 16 row-major) is one ldmatrix_x4 with lane l at row l % 16, col 8 (l / 16).
//   B from a row-major n x k array (K in S = Q K^T): ldmatrix (not trans) over the n rows;
//   B from a row-major k x n array (V in O = P V): ldmatrix_*_trans over the k rows.
//
// Every function is warp-collective: all 32 lanes execute it together. On a GPU these are
// inline PTX (sm_80+); under the test-only CUDA emulation (TRIDENT_CUDA_EMULATION) they are
// warp calls of the emulator with the same documented layouts (emu/src/mma_sync.cpp), which
// fault on a misaligned or non-shared ldmatrix row and sum each product in k order in float.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#if defined(TRIDENT_CUDA_EMULATION)
#include <trident_mma_sync_emu.hpp>
#define TRIDENT_MMA_SITE , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#else
#define TRIDENT_MMA_SITE
#endif

namespace trident::kernels::cuda::mma {

// d += a * b (bf16 inputs, f32 accumulate).
__device__ inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                    const uint32_t (&b)[2] TRIDENT_MMA_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::mma_m16n8k16_bf16(d, a, b, file, line);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4],
                                   const __nv_bfloat16* row_ptr TRIDENT_MMA_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::ldmatrix(r, 4, false, row_ptr, file, line);
#else
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(row_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
#endif
}

__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4],
                                         const __nv_bfloat16* row_ptr TRIDENT_MMA_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::ldmatrix(r, 4, true, row_ptr, file, line);
#else
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(row_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
#endif
}

__device__ inline void ldmatrix_x2(uint32_t (&r)[2],
                                   const __nv_bfloat16* row_ptr TRIDENT_MMA_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::ldmatrix(r, 2, false, row_ptr, file, line);
#else
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(row_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(s)
               : "memory");
#endif
}

__device__ inline void ldmatrix_x2_trans(uint32_t (&r)[2],
                                         const __nv_bfloat16* row_ptr TRIDENT_MMA_SITE) {
#if defined(TRIDENT_CUDA_EMULATION)
  ::cuemu::ptx::ldmatrix(r, 2, true, row_ptr, file, line);
#else
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(row_ptr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(s)
               : "memory");
#endif
}

// Two floats as one register of two bf16, each rounded to nearest even; lo in the low 16 bits.
__host__ __device__ inline uint32_t pack_bf16(float lo, float hi) {
#if defined(__CUDA_ARCH__)
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // one cvt.rn.bf16x2.f32
  return *reinterpret_cast<const uint32_t*>(&v);
#else
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
#endif
}

// The two bf16 of a register as floats (lo from the low 16 bits).
__host__ __device__ inline float unpack_bf16_lo(uint32_t r) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(r & 0xffffu)));
}
__host__ __device__ inline float unpack_bf16_hi(uint32_t r) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(r >> 16)));
}

}  // namespace trident::kernels::cuda::mma

#undef TRIDENT_MMA_SITE
