// Packed GEMM (GotoBLAS/BLIS structure) for row-major float and double, threaded over OpenMP's
// own pool (no second thread pool to fight it), in two instruction sets picked at run time:
// AVX2 + FMA (6 x 16 float register tile) and AVX-512 (12 x 32). The build itself stays at the
// baseline (no -march needed): each ISA's code is compiled under `#pragma GCC target` from
// gemm_packed_kernels.inc, and gemm_packed_product calls the level cpu_isa() allows.
//   C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, arguments checked by gemm.cpp, K > 0.
// op(B) is packed once into NR-column micro-panels, k-major (shared by the threads). Then, per
// block of mc rows (sized for L2) and per K block of kc: the A block is packed into MR-row
// micro-panels, k-major, and for every B micro-panel (kc x NR, stays in L1) and every A
// micro-panel the micro-kernel keeps an MR x NR tile of C in vector registers, adds kc rank-1
// updates (broadcast one A element, FMA with two B vectors) and writes C = alpha acc + beta C
// (beta on the first K block only; later blocks add). beta == 0 never reads C. Partial tiles at
// the edges are zero-padded in the packs, computed into a stack tile and merged.
// Each C element is computed by one work item, K blocked independently of the thread count and
// of the ISA (same kc, one FMA per k in order): results are bit-identical for any number of
// threads and between the AVX2 and AVX-512 kernels.
#include "gemm_packed.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>

#include "trident/kernels/cpu/cpu_isa.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define TRIDENT_GEMM_X86 1
#include <immintrin.h>
#else
#define TRIDENT_GEMM_X86 0
#endif

namespace trident::kernels::cpu::detail {

#if TRIDENT_GEMM_X86

namespace {

// Cache blocking (Zen 3: 32 KiB L1d, 512 KiB L2 per core), in elements: a kc x NR B
// micro-panel (16 KiB of float at NR 16) in L1, an mc x kc A block (144 KiB of float) in L2,
// packed B in L3. Blocks are then evened out (K = 384 runs as two blocks of 192, not 256 + 128).
// kKC is shared by both ISAs: it fixes the order of the sums, so it must be.
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 144;  // a multiple of both MR (6 and 12)
// Elements of B packed at a time (16 MiB of float): the whole of B at the GPT's shapes.
constexpr int64_t kBPackElems = int64_t{1} << 22;

// Below this many multiply-adds a product stays on the calling thread (a fork/join and the
// barriers cost more than they save).
constexpr int64_t kThreadGrain = int64_t{1} << 18;

constexpr size_t kBufferAlign = 64;

// A growable 64-byte-aligned scratch buffer.
class AlignedBuffer {
 public:
  void* get(size_t bytes) {
    if (bytes > size_) {
      const size_t rounded = (bytes + kBufferAlign - 1) / kBufferAlign * kBufferAlign;
      void* p = std::aligned_alloc(kBufferAlign, rounded);
      if (p == nullptr) throw std::bad_alloc();
      data_.reset(p);
      size_ = rounded;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  size_t size_ = 0;
};

// Per thread, kept between calls: OpenMP's pool threads persist, so packing buffers are
// allocated once per thread and size.
AlignedBuffer& a_pack_buffer() {
  thread_local AlignedBuffer buffer;
  return buffer;
}
AlignedBuffer& b_pack_buffer() {
  thread_local AlignedBuffer buffer;
  return buffer;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Splits n into ceil(n / max_block) nearly equal blocks, each a multiple of `multiple`.
int64_t balanced_block(int64_t n, int64_t max_block, int64_t multiple) {
  const int64_t blocks = ceil_div(n, max_block);
  return ceil_div(ceil_div(n, blocks), multiple) * multiple;
}

// The standard headers and the helpers above are compiled for the baseline; only what follows
// each target pragma uses the wider instructions (and is inlined into nothing but itself).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
#define TRIDENT_GEMM_AVX512 0
#include "gemm_packed_kernels.inc"
#undef TRIDENT_GEMM_AVX512
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push( \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#endif
namespace avx512 {
#define TRIDENT_GEMM_AVX512 1
#include "gemm_packed_kernels.inc"
#undef TRIDENT_GEMM_AVX512
}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

template <typename T>
void gemm_packed_product(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha,
                         const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                         int64_t ldc) {
  switch (cpu_isa()) {
    case CpuIsa::avx512:
      avx512::product<T>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    case CpuIsa::avx2:
      avx2::product<T>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    case CpuIsa::generic:
      break;
  }
  throw std::logic_error("gemm_packed_product: this CPU has no AVX2/FMA (gemm uses Eigen)");
}

#else  // not x86: no packed kernel, gemm.cpp uses Eigen.

template <typename T>
void gemm_packed_product(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
                         int64_t, T, T*, int64_t) {
  throw std::logic_error("gemm_packed_product: no packed kernel for this CPU (gemm uses Eigen)");
}

#endif

bool gemm_packed_available() {
  return cpu_isa() >= CpuIsa::avx2;
}

template void gemm_packed_product<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                         int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm_packed_product<double>(bool, bool, int64_t, int64_t, int64_t, double,
                                          const double*, int64_t, const double*, int64_t, double,
                                          double*, int64_t);

}  // namespace trident::kernels::cpu::detail
