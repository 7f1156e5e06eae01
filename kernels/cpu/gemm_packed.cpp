// Packed GEMM (GotoBLAS/BLIS structure) for row-major float and double on AVX2 + FMA, threaded
// over OpenMP's own pool (no second thread pool to fight it).
//   C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, arguments checked by gemm.cpp, K > 0.
// op(B) is packed once into NR-column micro-panels, k-major (shared by the threads). Then, per
// block of mc rows (sized for L2) and per K block of kc: the A block is packed into MR-row
// micro-panels, k-major, and for every B micro-panel (kc x NR, stays in L1) and every A
// micro-panel the micro-kernel keeps an MR x NR tile of C in 12 vector registers, adds kc
// rank-1 updates (broadcast one A element, FMA with two B vectors) and writes
// C = alpha acc + beta C (beta on the first K block only; later blocks add). beta == 0 never
// reads C. Partial tiles at the edges are zero-padded in the packs, computed into a stack tile
// and merged.
// Each C element is computed by one work item, K blocked independently of the thread count:
// results are bit-identical for any number of threads.
#include "gemm_packed.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace trident::kernels::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__)

namespace {

// One 256-bit register of T and the operations the micro-kernel needs.
template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }  // packed buffers: aligned
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int kLanes = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_load_pd(p); }
  static V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
};

// Register tile MR x NR: 6 rows x 2 vectors = 12 accumulators, 2 B vectors and 1 broadcast
// A element of the 16 AVX registers.
constexpr int64_t kMR = 6;
template <typename T>
constexpr int64_t kNR = 2 * Simd<T>::kLanes;

// Cache blocking (Zen 3: 32 KiB L1d, 512 KiB L2 per core), in elements: a kc x NR B
// micro-panel (16 KiB of float) in L1, an mc x kc A block (144 KiB of float) in L2, packed B in
// L3. Blocks are then evened out (K = 384 runs as two blocks of 192, not 256 + 128).
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 144;
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

// The MR x NR micro-kernel: acc = sum_k a[k] (x) b[k] over kc packed steps, then
// c = alpha acc + beta c (beta == 0: c is only written).
template <typename T>
void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T alpha, T beta,
                  T* __restrict c, int64_t ldc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::kLanes;
  // The C tile is needed only after the loop: start fetching its rows now (from L3, usually).
  for (int r = 0; r < kMR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 2 * L - 1), _MM_HINT_T0);
  }
  V c00 = S::zero(), c01 = S::zero(), c10 = S::zero(), c11 = S::zero(), c20 = S::zero(),
    c21 = S::zero(), c30 = S::zero(), c31 = S::zero(), c40 = S::zero(), c41 = S::zero(),
    c50 = S::zero(), c51 = S::zero();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = S::load(b), b1 = S::load(b + L);
    V ak = S::broadcast(a + 0);
    c00 = S::fma(ak, b0, c00);
    c01 = S::fma(ak, b1, c01);
    ak = S::broadcast(a + 1);
    c10 = S::fma(ak, b0, c10);
    c11 = S::fma(ak, b1, c11);
    ak = S::broadcast(a + 2);
    c20 = S::fma(ak, b0, c20);
    c21 = S::fma(ak, b1, c21);
    ak = S::broadcast(a + 3);
    c30 = S::fma(ak, b0, c30);
    c31 = S::fma(ak, b1, c31);
    ak = S::broadcast(a + 4);
    c40 = S::fma(ak, b0, c40);
    c41 = S::fma(ak, b1, c41);
    ak = S::broadcast(a + 5);
    c50 = S::fma(ak, b0, c50);
    c51 = S::fma(ak, b1, c51);
    a += kMR;
    b += 2 * L;
  }
  const V va = S::set1(alpha);
  const auto store_row = [&](T* row, V lo, V hi) {
    if (beta == T(0)) {
      S::storeu(row, S::mul(va, lo));
      S::storeu(row + L, S::mul(va, hi));
    } else {
      const V vb = S::set1(beta);
      S::storeu(row, S::fma(va, lo, S::mul(vb, S::loadu(row))));
      S::storeu(row + L, S::fma(va, hi, S::mul(vb, S::loadu(row + L))));
    }
  };
  store_row(c + 0 * ldc, c00, c01);
  store_row(c + 1 * ldc, c10, c11);
  store_row(c + 2 * ldc, c20, c21);
  store_row(c + 3 * ldc, c30, c31);
  store_row(c + 4 * ldc, c40, c41);
  store_row(c + 5 * ldc, c50, c51);
}

// A partial tile (m < MR or n < NR rows/columns of C left): the full tile goes to the stack
// and only the m x n valid part is merged, with the same alpha/beta rule.
template <typename T>
void edge_kernel(int64_t kc, const T* a, const T* b, T alpha, T beta, T* c, int64_t ldc, int64_t m,
                 int64_t n) {
  alignas(kBufferAlign) T tile[kMR * kNR<T>];
  micro_kernel<T>(kc, a, b, T(1), T(0), tile, kNR<T>);
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    const T* acc = tile + i * kNR<T>;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = beta == T(0) ? alpha * acc[j] : alpha * acc[j] + beta * row[j];
    }
  }
}

// Packs op(A)[i0 : i0+mc, k0 : k0+kc] into MR-row micro-panels: panel p holds, for each k, the
// MR elements of rows p*MR.. (zero past row mc). op(A)(i, k) is A[i*lda + k], or A[k*lda + i]
// when transposed.
template <typename T>
void pack_a(bool trans, const T* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
            T* __restrict dst) {
  if (trans) {
    // Row k of A holds element k of every panel: read it once, front to back, and deal it out
    // (panel by panel would fetch each cache line of A several times, kc rows apart).
    const int64_t full = mc / kMR * kMR;
    constexpr int64_t kAhead = 4, kLine = 64 / sizeof(T);
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A + (k0 + k) * lda + i0;
      if (k + kAhead < kc) {  // rows lda apart defeat the hardware prefetcher
        for (int64_t x = 0; x < mc; x += kLine) {
          _mm_prefetch(reinterpret_cast<const char*>(src + kAhead * lda + x), _MM_HINT_T0);
        }
      }
      T* d = dst + k * kMR;
      for (int64_t p = 0; p < full; p += kMR, d += kc * kMR) {
        for (int64_t r = 0; r < kMR; ++r) d[r] = src[p + r];
      }
      if (full < mc) {
        for (int64_t r = 0; r < kMR; ++r) d[r] = full + r < mc ? src[full + r] : T(0);
      }
    }
    return;
  }
  for (int64_t p = 0; p < mc; p += kMR) {
    const int64_t m = std::min(kMR, mc - p);
    if (m == kMR) {
      const T* r0 = A + (i0 + p) * lda + k0;
      const T *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda, *r4 = r3 + lda, *r5 = r4 + lda;
      int64_t k = 0;
      if constexpr (std::is_same<T, float>::value) {
        // 4 k at a time: rows 0-3 by a 4x4 transpose, rows 4-5 by interleaving.
        for (; k + 4 <= kc; k += 4, dst += 4 * kMR) {
          __m128 x0 = _mm_loadu_ps(r0 + k), x1 = _mm_loadu_ps(r1 + k), x2 = _mm_loadu_ps(r2 + k),
                 x3 = _mm_loadu_ps(r3 + k);
          _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
          const __m128 x4 = _mm_loadu_ps(r4 + k), x5 = _mm_loadu_ps(r5 + k);
          const __m128 lo = _mm_unpacklo_ps(x4, x5), hi = _mm_unpackhi_ps(x4, x5);
          _mm_storeu_ps(dst + 0, x0);
          _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4), lo);
          _mm_storeu_ps(dst + 6, x1);
          _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 10), lo);
          _mm_storeu_ps(dst + 12, x2);
          _mm_storel_pi(reinterpret_cast<__m64*>(dst + 16), hi);
          _mm_storeu_ps(dst + 18, x3);
          _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 22), hi);
        }
      }
      for (; k < kc; ++k, dst += kMR) {
        dst[0] = r0[k];
        dst[1] = r1[k];
        dst[2] = r2[k];
        dst[3] = r3[k];
        dst[4] = r4[k];
        dst[5] = r5[k];
      }
    } else {
      const T* src = A + (i0 + p) * lda + k0;
      for (int64_t k = 0; k < kc; ++k, dst += kMR) {
        for (int64_t r = 0; r < kMR; ++r) dst[r] = r < m ? src[r * lda + k] : T(0);
      }
    }
  }
}

// Packs one NR-column micro-panel of op(B)[k0 : k0+kc, j0 : j0+n] (n <= NR, zero past n): for
// each k, NR consecutive elements. op(B)(k, j) is B[k*ldb + j], or B[j*ldb + k] when transposed.
template <typename T>
void pack_b_panel(bool trans, const T* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                  int64_t n, T* __restrict dst) {
  constexpr int64_t NR = kNR<T>;
  if (!trans) {
    using S = Simd<T>;
    const T* src = B + k0 * ldb + j0;
    for (int64_t k = 0; k < kc; ++k, src += ldb, dst += NR) {
      if (n == NR) {  // two vectors, not a memcpy call per 64 bytes
        S::storeu(dst, S::loadu(src));
        S::storeu(dst + S::kLanes, S::loadu(src + S::kLanes));
      } else {
        for (int64_t j = 0; j < NR; ++j) dst[j] = j < n ? src[j] : T(0);
      }
    }
    return;
  }
  for (int64_t j = 0; j < NR; ++j) {
    if (j < n) {
      const T* src = B + (j0 + j) * ldb + k0;
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
    } else {
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    }
  }
}

// Multiplies the packed A block (mc rows, one K block of kc) by B micro-panels [q_begin, q_end)
// (panel q's K block at b_pack + q * K * NR + pc * NR) into C[ic.., 0..]; C points at column 0.
template <typename T>
void multiply_block(const T* a_pack, int64_t mc, const T* b_pack, int64_t K, int64_t pc,
                    int64_t q_begin, int64_t q_end, int64_t N, int64_t kc, T alpha, T beta, T* C,
                    int64_t ldc) {
  constexpr int64_t NR = kNR<T>;
  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t j = q * NR, n = std::min(NR, N - j);
    const T* b = b_pack + q * K * NR + pc * NR;
    for (int64_t i = 0; i < mc; i += kMR) {
      const int64_t m = std::min(kMR, mc - i);
      const T* a = a_pack + i * kc;
      T* c = C + i * ldc + j;
      if (m == kMR && n == NR) {
        micro_kernel<T>(kc, a, b, alpha, beta, c, ldc);
      } else {
        edge_kernel<T>(kc, a, b, alpha, beta, c, ldc, m, n);
      }
    }
  }
}

}  // namespace

// Threads share one packing of B: every NR-column panel of op(B) over all of K (columns in
// chunks of at most kBPackElems / K, so the buffer stays bounded), then take work items
// dynamically: an item is a block of rows (mc, sized for L2) times a range of panels; it packs
// its A block one K block at a time and runs the micro-kernel over its panels. One barrier after
// the packing, one at the end; a thread that the OS holds back only delays its own items.
template <typename T>
void gemm_packed_product(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha,
                         const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                         int64_t ldc) {
  constexpr int64_t NR = kNR<T>;
  const int64_t kc_max = balanced_block(K, kKC, 1);
  const int64_t mc_max = balanced_block(M, kMC, kMR);
  const int64_t m_blocks = ceil_div(M, mc_max);
  const bool threaded =
      !omp_in_parallel() && omp_get_max_threads() > 1 && M * N * K >= kThreadGrain;
  const int threads = threaded ? omp_get_max_threads() : 1;
  // Columns packed at a time (all of N unless B is large), and panels per work item: all of
  // the chunk's, unless M has too few row blocks to keep every thread busy.
  const int64_t chunk_panels = std::max<int64_t>(1, kBPackElems / (K * NR));
  const int64_t chunk_cols = std::min(N, chunk_panels * NR);
  const int64_t splits = threads > 1 ? ceil_div(4 * threads, m_blocks) : 1;
  const int64_t item_panels = std::max<int64_t>(1, ceil_div(ceil_div(chunk_cols, NR), splits));
  T* b_pack = static_cast<T*>(b_pack_buffer().get(sizeof(T) * K * ceil_div(chunk_cols, NR) * NR));

  const auto pack_panel = [&](int64_t jc, int64_t nc, int64_t q) {
    pack_b_panel<T>(transB, B, ldb, 0, K, jc + q * NR, std::min(NR, nc - q * NR),
                    b_pack + q * K * NR);
  };
  const auto run_item = [&](int64_t jc, int64_t nc, int64_t n_items, int64_t item, T* a_pack) {
    const int64_t n_panels = ceil_div(nc, NR);
    const int64_t ic = item / n_items * mc_max, mc = std::min(mc_max, M - ic);
    const int64_t q_begin = item % n_items * item_panels;
    const int64_t q_end = std::min(n_panels, q_begin + item_panels);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      pack_a<T>(transA, A, lda, ic, mc, pc, kc, a_pack);
      multiply_block<T>(a_pack, mc, b_pack, K, pc, q_begin, q_end, nc, kc, alpha,
                        pc == 0 ? beta : T(1), C + ic * ldc + jc, ldc);
    }
  };
  const size_t a_bytes = sizeof(T) * mc_max * kc_max;

  if (threads == 1) {  // no parallel construct: small products inside other kernels' threads
    T* a_pack = static_cast<T*>(a_pack_buffer().get(a_bytes));
    for (int64_t jc = 0; jc < N; jc += chunk_cols) {
      const int64_t nc = std::min(chunk_cols, N - jc), n_panels = ceil_div(nc, NR);
      for (int64_t q = 0; q < n_panels; ++q) pack_panel(jc, nc, q);
      const int64_t n_items = ceil_div(n_panels, item_panels);
      for (int64_t item = 0; item < m_blocks * n_items; ++item) {
        run_item(jc, nc, n_items, item, a_pack);
      }
    }
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    T* a_pack = static_cast<T*>(a_pack_buffer().get(a_bytes));
    for (int64_t jc = 0; jc < N; jc += chunk_cols) {
      const int64_t nc = std::min(chunk_cols, N - jc), n_panels = ceil_div(nc, NR);
#pragma omp for schedule(static)
      for (int64_t q = 0; q < n_panels; ++q) pack_panel(jc, nc, q);
      // implicit barrier: B's chunk is packed
      const int64_t n_items = ceil_div(n_panels, item_panels);
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < m_blocks * n_items; ++item) {
        run_item(jc, nc, n_items, item, a_pack);
      }  // implicit barrier: the chunk's buffer is free again
    }
  }
}

bool gemm_packed_native() {
  return true;
}

#else  // no AVX2/FMA in this build: the packed path is not compiled, gemm.cpp uses Eigen.

template <typename T>
void gemm_packed_product(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
                         int64_t, T, T*, int64_t) {
  throw std::logic_error("gemm_packed_product: built without AVX2/FMA");
}

bool gemm_packed_native() {
  return false;
}

#endif

template void gemm_packed_product<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                         int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm_packed_product<double>(bool, bool, int64_t, int64_t, int64_t, double,
                                          const double*, int64_t, const double*, int64_t, double,
                                          double*, int64_t);

}  // namespace trident::kernels::cpu::detail
