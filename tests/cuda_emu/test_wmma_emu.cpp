// nvcuda::wmma under the CUDA emulation (kernels/cuda/emu/include/mma.h, src/wmma.cpp): bf16
// m16n16k16 products against a double reference for every layout of A, B and C/D, one tile and
// tiled with padded leading dimensions; that the element-to-lane mapping of a fragment is opaque
// (uniform element-wise ops work, code that assumes a mapping or reuses an accumulator as
// matrix_a does not, and a lane reading other lanes' stores needs a __syncwarp); and the faults
// a GPU would give or leave undefined: a lane that skips a collective call, lanes passing
// different arguments, a partial warp, misaligned pointers and leading dimensions.
#include <mma.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "emu_test_util.hpp"
#include "trident_cuda_emu.hpp"

namespace {

using namespace nvcuda;
using cuemu::ThreadOrder;
using bf16 = __nv_bfloat16;

using emu_test::check;
using emu_test::DeviceArray;
using emu_test::expect_fault;

struct OrderGuard {
  ThreadOrder saved = cuemu::thread_order();
  ~OrderGuard() { cuemu::set_thread_order(saved); }
};

// Index of element (row, col) of a matrix stored with leading dimension ld.
template <typename Layout>
__host__ __device__ size_t at(int row, int col, int ld) {
  return std::is_same<Layout, wmma::row_major>::value ? static_cast<size_t>(row) * ld + col
                                                      : static_cast<size_t>(col) * ld + row;
}
__host__ __device__ size_t at(int row, int col, int ld, wmma::layout_t layout) {
  return layout == wmma::mem_row_major ? at<wmma::row_major>(row, col, ld)
                                       : at<wmma::col_major>(row, col, ld);
}

// D = A B + C, A (m x k) and B (k x n) bf16 in layouts LA / LB, C and D f32 in `layout`; all
// sizes multiples of 16. One warp per 16 x 16 tile of D, two warps per block.
template <typename LA, typename LB>
__global__ void wmma_gemm_kernel(const bf16* a, int lda, const bf16* b, int ldb, const float* c,
                                 float* d, int ldc, wmma::layout_t layout, int m, int n, int k) {
  const int tile = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int tiles_n = n / 16;
  if (tile >= m / 16 * tiles_n) return;  // the whole warp
  const int r0 = tile / tiles_n * 16, c0 = tile % tiles_n * 16;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, c + at(r0, c0, ldc, layout), ldc, layout);
  for (int k0 = 0; k0 < k; k0 += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB> fb;
    wmma::load_matrix_sync(fa, a + at<LA>(r0, k0, lda), lda);
    wmma::load_matrix_sync(fb, b + at<LB>(k0, c0, ldb), ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(d + at(r0, c0, ldc, layout), acc, ldc, layout);
}

// One warp: d (16 x 16 row-major) = scale * a b, a row-major and b col-major with ld 16.
__global__ void wmma_scaled_product_kernel(const bf16* a, const bf16* b, float* d, float scale) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= scale;
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// The bug this emulation is for: writes x[i] of lane l to out[l * 8 + i], as if lane l held
// elements l * 8 .. l * 8 + 7 of the row-major tile.
__global__ void wmma_assumed_mapping_kernel(const bf16* a, const bf16* b, float* out) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  const int lane = threadIdx.x % 32;
  for (int i = 0; i < acc.num_elements; ++i) out[lane * acc.num_elements + i] = acc.x[i];
}

// out = bf16(a b) v, the P V step of attention. staged: S goes through shared memory (store,
// __syncwarp, convert to bf16, __syncwarp, load as matrix_a) when `sync`, without the
// __syncwarps when not. Not staged: the accumulator's x[] is copied into a matrix_a fragment.
__global__ void wmma_chained_product_kernel(const bf16* a, const bf16* b, const bf16* v, float* out,
                                            bool staged, bool sync) {
  TRIDENT_DYNAMIC_SHARED(float, s_f32);  // 256 floats, then 256 bf16 (32-byte aligned)
  bf16* s_bf16 = reinterpret_cast<bf16*>(s_f32 + 256);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa, fp;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb, fv;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  if (staged) {
    const int lane = threadIdx.x % 32;
    wmma::store_matrix_sync(s_f32, acc, 16, wmma::mem_row_major);
    if (sync) __syncwarp();
    for (int i = lane; i < 256; i += 32) s_bf16[i] = __float2bfloat16_rn(s_f32[i]);
    if (sync) __syncwarp();
    wmma::load_matrix_sync(fp, s_bf16, 16);
  } else {
    for (int i = 0; i < fp.num_elements; ++i) fp.x[i] = __float2bfloat16_rn(acc.x[i]);
  }
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fv, v, 16);
  wmma::mma_sync(acc, fp, fv, acc);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_lane_skips_mma_kernel(const bf16* a, const bf16* b, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  if (threadIdx.x != 7) wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_lane_exits_before_load_kernel(const bf16* a, float* d) {
  if (threadIdx.x == 3) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a, 16);
  d[threadIdx.x] = static_cast<float>(fa.x[0]);
}

// Lane 5 loads another tile than the others (an aligned one: only the disagreement is wrong).
__global__ void wmma_divergent_pointer_kernel(const bf16* a, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + (threadIdx.x == 5 ? 16 : 0), 32);
  d[threadIdx.x] = static_cast<float>(fa.x[0]);
}

// One tile per block: a well-formed load and store, or one with a bad pointer or ldm.
enum class Misuse { None, MisalignedLoad, LoadLdm, MisalignedStore, StoreLdm };
__global__ void wmma_misuse_kernel(const bf16* a, float* d, Misuse misuse) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  if (misuse == Misuse::MisalignedLoad) wmma::load_matrix_sync(fa, a + 8, 32);  // 16 bytes off
  if (misuse == Misuse::LoadLdm) wmma::load_matrix_sync(fa, a, 20);
  if (misuse == Misuse::MisalignedStore)
    wmma::store_matrix_sync(d + 4, acc, 32, wmma::mem_row_major);
  if (misuse == Misuse::StoreLdm) wmma::store_matrix_sync(d, acc, 18, wmma::mem_col_major);
  if (misuse == Misuse::None) {
    wmma::load_matrix_sync(fa, a, 24);
    wmma::store_matrix_sync(d, acc, 20, wmma::mem_col_major);
  }
}

std::vector<bf16> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<bf16> v(n);
  for (bf16& x : v) x = __float2bfloat16_rn(u(rng));
  return v;
}

// Row-major m x n product of row-major a (m x k) and b (k x n) in double, plus c.
std::vector<double> reference(const std::vector<bf16>& a, const std::vector<bf16>& b,
                              const std::vector<float>& c, int m, int n, int k) {
  std::vector<double> d(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = c.empty() ? 0.0 : c[i * n + j];
      for (int l = 0; l < k; ++l) {
        s += static_cast<double>(static_cast<float>(a[i * k + l])) *
             static_cast<float>(b[l * n + j]);
      }
      d[i * n + j] = s;
    }
  }
  return d;
}

// Elements of got (row-major 16 x 16) farther than tol * (1 + |want|) from want.
int mismatches(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])))) ++bad;
  }
  return bad;
}

template <typename LA, typename LB>
void check_gemm(int m, int n, int k, wmma::layout_t layout) {
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
  const bool d_row = layout == wmma::mem_row_major;
  INFO("m " << m << " n " << n << " k " << k << " A " << (a_row ? "row" : "col") << " B "
            << (b_row ? "row" : "col") << " C/D " << (d_row ? "row" : "col"));
  std::mt19937 rng(static_cast<unsigned>(m * 131 + n * 17 + k));
  const std::vector<bf16> a = random_bf16(static_cast<size_t>(m) * k, rng);
  const std::vector<bf16> b = random_bf16(static_cast<size_t>(k) * n, rng);
  std::vector<float> c(static_cast<size_t>(m) * n);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (float& x : c) x = u(rng);
  // Padded leading dimensions (still multiples of 16 bytes).
  const int lda = (a_row ? k : m) + 8, ldb = (b_row ? n : k) + 8, ldc = (d_row ? n : m) + 4;
  std::vector<bf16> a_mem(static_cast<size_t>(lda) * (a_row ? m : k), bf16(0.0f));
  std::vector<bf16> b_mem(static_cast<size_t>(ldb) * (b_row ? k : n), bf16(0.0f));
  std::vector<float> c_mem(static_cast<size_t>(ldc) * (d_row ? m : n), 0.0f);
  for (int i = 0; i < m; ++i) {
    for (int l = 0; l < k; ++l) a_mem[at<LA>(i, l, lda)] = a[i * k + l];
  }
  for (int l = 0; l < k; ++l) {
    for (int j = 0; j < n; ++j) b_mem[at<LB>(l, j, ldb)] = b[l * n + j];
  }
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) c_mem[at(i, j, ldc, layout)] = c[i * n + j];
  }
  DeviceArray<bf16> d_a(a_mem), d_b(b_mem);
  DeviceArray<float> d_c(c_mem), d_d(c_mem.size());  // d starts as NaN
  const int tiles = m / 16 * (n / 16);
  TRIDENT_LAUNCH((wmma_gemm_kernel<LA, LB>), (tiles + 1) / 2, 64, 0, nullptr)
  (d_a.p, lda, d_b.p, ldb, d_c.p, d_d.p, ldc, layout, m, n, k);
  check(cudaGetLastError());
  const std::vector<float> got = d_d.get();
  const std::vector<double> want = reference(a, b, c, m, n, k);
  int bad = 0, written = 0;
  std::string first_bad;
  for (size_t e = 0; e < got.size(); ++e) written += std::isnan(got[e]) ? 0 : 1;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      const double w = want[i * n + j];
      const float g = got[at(i, j, ldc, layout)];
      // k bf16 products (exact in float) summed in float: a few ulps of sum |terms|.
      if (!(std::abs(g - w) <= 1e-5 * (4.0 + k)) && bad++ == 0) {
        first_bad = "(" + std::to_string(i) + ", " + std::to_string(j) + "): " + std::to_string(g) +
                    " vs " + std::to_string(w);
      }
    }
  }
  INFO("first wrong element " << first_bad);
  CHECK(bad == 0);
  CHECK(written == m * n);  // the padding of D is not written
}

template <typename LA, typename LB>
void check_gemms(int m, int n, int k) {
  check_gemm<LA, LB>(m, n, k, wmma::mem_row_major);
  check_gemm<LA, LB>(m, n, k, wmma::mem_col_major);
}

// The k x n matrix b (row-major) in column-major order.
std::vector<bf16> col_major_copy(const std::vector<bf16>& b, int k, int n) {
  std::vector<bf16> t(b.size());
  for (int l = 0; l < k; ++l) {
    for (int j = 0; j < n; ++j) t[static_cast<size_t>(j) * k + l] = b[l * n + j];
  }
  return t;
}

}  // namespace

TEST_CASE("wmma: bf16 products match a double reference for every layout", "[cuda-emu][wmma]") {
  OrderGuard guard;
  const int sizes[2][3] = {{16, 16, 16}, {64, 48, 32}};
  for (ThreadOrder o : {ThreadOrder::Shuffle, ThreadOrder::Forward, ThreadOrder::Reverse}) {
    cuemu::set_thread_order(o, 11);
    for (const auto& s : sizes) {
      check_gemms<wmma::row_major, wmma::row_major>(s[0], s[1], s[2]);
      check_gemms<wmma::row_major, wmma::col_major>(s[0], s[1], s[2]);
      check_gemms<wmma::col_major, wmma::row_major>(s[0], s[1], s[2]);
      check_gemms<wmma::col_major, wmma::col_major>(s[0], s[1], s[2]);
    }
  }
}

TEST_CASE("wmma: a uniform operation on every x[i] of an accumulator works", "[cuda-emu][wmma]") {
  std::mt19937 rng(5);
  const std::vector<bf16> a = random_bf16(256, rng), b = random_bf16(256, rng);
  DeviceArray<bf16> d_a(a), d_b(col_major_copy(b, 16, 16));
  DeviceArray<float> out(256);
  TRIDENT_LAUNCH(wmma_scaled_product_kernel, 1, 32, 0, nullptr)(d_a.p, d_b.p, out.p, 0.5f);
  check(cudaGetLastError());
  std::vector<double> want = reference(a, b, {}, 16, 16, 16);
  for (double& w : want) w *= 0.5;
  CHECK(mismatches(out.get(), want, 1e-5) == 0);
}

TEST_CASE("wmma: the element-to-lane mapping of a fragment is opaque and changes between launches",
          "[cuda-emu][wmma]") {
  std::mt19937 rng(6);
  const std::vector<bf16> a = random_bf16(256, rng), b = random_bf16(256, rng);
  const std::vector<bf16> v = random_bf16(256, rng);
  DeviceArray<bf16> d_a(a), d_b_col(col_major_copy(b, 16, 16)), d_b(b), d_v(v);
  const std::vector<double> s = reference(a, b, {}, 16, 16, 16);

  // Assuming lane l holds row-major elements l * 8 .. l * 8 + 7: every value is there, at the
  // wrong place, and at another wrong place in the next launch.
  DeviceArray<float> out(256), out2(256);
  TRIDENT_LAUNCH(wmma_assumed_mapping_kernel, 1, 32, 0, nullptr)(d_a.p, d_b_col.p, out.p);
  TRIDENT_LAUNCH(wmma_assumed_mapping_kernel, 1, 32, 0, nullptr)(d_a.p, d_b_col.p, out2.p);
  check(cudaGetLastError());
  std::vector<float> got = out.get();
  const std::vector<float> got2 = out2.get();
  CHECK(mismatches(got, s, 1e-5) > 200);
  CHECK(got != got2);
  std::vector<double> sorted_s = s;
  std::sort(sorted_s.begin(), sorted_s.end());
  std::sort(got.begin(), got.end());
  CHECK(mismatches(got, sorted_s, 1e-5) == 0);

  // The P V step of attention: P = bf16(A B) must go through memory to become matrix_a.
  std::vector<bf16> p(256);
  for (int i = 0; i < 256; ++i) p[i] = __float2bfloat16_rn(static_cast<float>(s[i]));
  const std::vector<double> want = reference(p, v, {}, 16, 16, 16);
  const size_t smem = 256 * sizeof(float) + 256 * sizeof(bf16);
  DeviceArray<float> staged(256), unsynced(256), reused(256);
  TRIDENT_LAUNCH(wmma_chained_product_kernel, 1, 32, smem, nullptr)
  (d_a.p, d_b.p, d_v.p, staged.p, true, true);
  TRIDENT_LAUNCH(wmma_chained_product_kernel, 1, 32, smem, nullptr)
  (d_a.p, d_b.p, d_v.p, unsynced.p, true, false);
  TRIDENT_LAUNCH(wmma_chained_product_kernel, 1, 32, smem, nullptr)
  (d_a.p, d_b.p, d_v.p, reused.p, false, false);
  check(cudaGetLastError());
  // bf16 P: a product that rounds to the other side of a bf16 step moves an output by ~1e-2.
  CHECK(mismatches(staged.get(), want, 2e-2) == 0);
  CHECK(mismatches(unsynced.get(), want, 2e-2) > 0);  // lanes read S before others stored it
  CHECK(mismatches(reused.get(), want, 2e-2) > 128);  // accumulator x[] is not matrix_a x[]
}

TEST_CASE("wmma: a lane that skips a call or passes other arguments faults", "[cuda-emu][wmma]") {
  std::vector<bf16> zeros(1024, bf16(0.0f));
  DeviceArray<bf16> a(zeros), b(zeros);
  DeviceArray<float> d(1024);

  TRIDENT_LAUNCH(wmma_lane_skips_mma_kernel, 1, 32, 0, nullptr)(a.p, b.p, d.p);
  std::string msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("wmma_lane_skips_mma_kernel") &&
                      Catch::Contains("mma_sync at test_wmma_emu.cpp:") &&
                      Catch::Contains("never completes") &&
                      Catch::Contains("lane 7) waits at store_matrix_sync test_wmma_emu.cpp:"));

  TRIDENT_LAUNCH(wmma_lane_exits_before_load_kernel, 1, 32, 0, nullptr)(a.p, d.p);
  msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("load_matrix_sync at test_wmma_emu.cpp:") &&
                      Catch::Contains("lane 3) has exited"));

  TRIDENT_LAUNCH(wmma_divergent_pointer_kernel, 1, 32, 0, nullptr)(a.p, d.p);
  msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("load_matrix_sync at test_wmma_emu.cpp:") &&
                      Catch::Contains("lane 5) passes (pointer") &&
                      Catch::Contains("every lane of the warp must pass the same arguments"));

  // 48 threads: the second warp has 16 lanes, and a wmma call needs 32.
  TRIDENT_LAUNCH(wmma_misuse_kernel, 1, 48, 0, nullptr)(a.p, d.p, Misuse::None);
  msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("load_matrix_sync") && Catch::Contains("lane 16 does not exist"));
}

TEST_CASE("wmma: tiles need 32-byte aligned pointers and ldm a multiple of 16 bytes",
          "[cuda-emu][wmma]") {
  std::vector<bf16> zeros(1024, bf16(0.0f));
  DeviceArray<bf16> a(zeros);
  DeviceArray<float> d(1024);
  const struct {
    Misuse misuse;
    const char* call;
    const char* why;
  } cases[] = {
      {Misuse::MisalignedLoad, "load_matrix_sync with pointer", "not 32-byte (256-bit) aligned"},
      {Misuse::LoadLdm, "load_matrix_sync with ldm 20", "not a multiple of 8 elements"},
      {Misuse::MisalignedStore, "store_matrix_sync with pointer", "not 32-byte (256-bit) aligned"},
      {Misuse::StoreLdm, "store_matrix_sync with ldm 18", "not a multiple of 4 elements"},
  };
  for (const auto& c : cases) {
    TRIDENT_LAUNCH(wmma_misuse_kernel, 2, 64, 0, nullptr)(a.p, d.p, c.misuse);
    const std::string msg = expect_fault();
    CHECK_THAT(msg, Catch::Contains("wmma_misuse_kernel") && Catch::Contains(c.call) &&
                        Catch::Contains(c.why) && Catch::Contains("test_wmma_emu.cpp:"));
  }
  // The same kernel with valid arguments runs (col-major store of ones, ldm 20).
  TRIDENT_LAUNCH(wmma_misuse_kernel, 2, 64, 0, nullptr)(a.p, d.p, Misuse::None);
  check(cudaDeviceSynchronize());
  const std::vector<float> h = d.get();
  for (int col = 0; col < 16; ++col) {
    for (int row = 0; row < 16; ++row) CHECK(h[col * 20 + row] == 1.0f);
  }
}
