// Trident's CUDA emulation of <mma.h> (nvcuda::wmma, warp-level tensor-core matrix products),
// the subset a bf16 tensor-core kernel needs: m16n16k16 fragments of __nv_bfloat16 (matrix_a,
// matrix_b; row_major or col_major) and of float (accumulator); fill_fragment, load_matrix_sync,
// store_matrix_sync, mma_sync, with the real header's names and signatures. No half (the
// emulation has no half type), no tf32, int8 or other shapes.
//
// What a GPU leaves unspecified or requires is made visible here:
// * load/store/mma are warp-collective: all 32 lanes of the warp reach the same call (a warp
//   call of the fiber scheduler, like __syncwarp(0xffffffff)) with the same pointer, ldm and
//   layout; a lane that does not is a deadlock or fault naming the call, thread and line.
// * Which (row, col) of the 16 x 16 tile a lane holds in x[i] is a random permutation, drawn
//   per launch (from TRIDENT_CUDA_EMU_SEED and the launch count) and per fragment kind (A row /
//   col major, B row / col major, accumulator). Operations applied alike to every x[i] work;
//   code that assumes a lane's rows or columns, or moves x[] from one kind of fragment to
//   another (an accumulator reused as matrix_a), gets wrong results.
// * The memory pointer must be 32-byte (256-bit) aligned and ldm a multiple of 16 bytes (8
//   bf16, 4 float elements), else the launch faults.
// * load and store first wait for the whole warp, then each lane reads or writes its own
//   elements: a lane that reads what other lanes stored needs a __syncwarp after the store.
// * mma_sync: D = A * B + C, D(r,c) = C(r,c) + A(r,0)B(0,c) + ... + A(r,15)B(15,c) summed in
//   float in that order (bf16 products are exact in float). Tensor cores round differently.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

namespace cuemu::wmma {

// Each kind of fragment has its own element-to-lane mapping.
enum class Kind : int { ARowMajor, AColMajor, BRowMajor, BColMajor, Accumulator };

template <typename T, int size>
struct FragmentBase {
  enum { num_elements = size, num_storage_elements = size };
  typedef T element_type;
  typedef T storage_element_type;
  T x[size];
};

// Implemented in emu/src/wmma.cpp; file and line are the caller's.
void load(Kind kind, const __nv_bfloat16* p, unsigned ldm, __nv_bfloat16* x, const char* file,
          int line);
void load(const float* p, unsigned ldm, bool col_major, float* x, const char* file, int line);
void store(float* p, const float* x, unsigned ldm, bool col_major, const char* file, int line);
void mma(float* d, Kind a_kind, const __nv_bfloat16* a, Kind b_kind, const __nv_bfloat16* b,
         const float* c, const char* file, int line);

}  // namespace cuemu::wmma

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int m, int n, int k, typename T, typename Layout = void>
class fragment;
template <>
class fragment<matrix_a, 16, 16, 16, __nv_bfloat16, row_major>
    : public cuemu::wmma::FragmentBase<__nv_bfloat16, 8> {};
template <>
class fragment<matrix_a, 16, 16, 16, __nv_bfloat16, col_major>
    : public cuemu::wmma::FragmentBase<__nv_bfloat16, 8> {};
template <>
class fragment<matrix_b, 16, 16, 16, __nv_bfloat16, row_major>
    : public cuemu::wmma::FragmentBase<__nv_bfloat16, 8> {};
template <>
class fragment<matrix_b, 16, 16, 16, __nv_bfloat16, col_major>
    : public cuemu::wmma::FragmentBase<__nv_bfloat16, 8> {};
template <>
class fragment<accumulator, 16, 16, 16, float> : public cuemu::wmma::FragmentBase<float, 8> {};

// Not collective (the same value in every lane is what makes it meaningful).
template <typename T, int size>
inline void fill_fragment(cuemu::wmma::FragmentBase<T, size>& f,
                          const typename cuemu::wmma::FragmentBase<T, size>::element_type& v) {
  for (int i = 0; i < size; ++i) f.x[i] = v;
}

// The trailing file and line default to the call site (GCC and Clang builtins), so faults name
// the kernel's line; callers pass the real API's arguments only.
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __nv_bfloat16, row_major>& f,
                             const __nv_bfloat16* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuemu::wmma::load(cuemu::wmma::Kind::ARowMajor, p, ldm, f.x, file, line);
}
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, __nv_bfloat16, col_major>& f,
                             const __nv_bfloat16* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuemu::wmma::load(cuemu::wmma::Kind::AColMajor, p, ldm, f.x, file, line);
}
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __nv_bfloat16, row_major>& f,
                             const __nv_bfloat16* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuemu::wmma::load(cuemu::wmma::Kind::BRowMajor, p, ldm, f.x, file, line);
}
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, __nv_bfloat16, col_major>& f,
                             const __nv_bfloat16* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuemu::wmma::load(cuemu::wmma::Kind::BColMajor, p, ldm, f.x, file, line);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t layout, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  cuemu::wmma::load(p, ldm, layout == mem_col_major, f.x, file, line);
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  cuemu::wmma::store(p, f.x, ldm, layout == mem_col_major, file, line);
}
// D = A B + C for every pair of A and B layouts.
template <typename LayoutA, typename LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LayoutA>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using cuemu::wmma::Kind;
  const Kind ka = std::is_same<LayoutA, row_major>::value ? Kind::ARowMajor : Kind::AColMajor;
  const Kind kb = std::is_same<LayoutB, row_major>::value ? Kind::BRowMajor : Kind::BColMajor;
  cuemu::wmma::mma(d.x, ka, a.x, kb, b.x, c.x, file, line);
}

}  // namespace wmma
}  // namespace nvcuda
