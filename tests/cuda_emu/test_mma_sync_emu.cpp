// The PTX warp-level matrix primitives of kernels/cuda/mma_sync.cuh under the CUDA emulation
// (emu/src/mma_sync.cpp): mma_m16n8k16 with fragments built by hand from the PTX ISA's documented
// layouts against a host product summed in the same (k) order, bitwise; the four ldmatrix
// variants with scrambled per-lane row addresses against the documented semantics, register by
// register; ldmatrix + mma and the FlashAttention-2 move of two n8 accumulators into one k16 A
// fragment; and the faults: a lane that skips the mma, a misaligned or non-shared ldmatrix row.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common.cuh"
#include "emu_test_util.hpp"
#include "mma_sync.cuh"
#include "trident_cuda_emu.hpp"

namespace {

using bf16 = __nv_bfloat16;
using emu_test::check;
using emu_test::DeviceArray;
using emu_test::expect_fault;
namespace mma = trident::kernels::cuda::mma;

std::vector<bf16> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<bf16> v(n);
  for (bf16& x : v) x = __float2bfloat16_rn(u(rng));
  return v;
}
float f(bf16 x) {
  return __bfloat162float(x);
}
uint32_t pack(bf16 lo, bf16 hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(lo)) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(hi)) << 16);
}

// One warp: d = c + a b with a (16 x 16 row-major), b (16 x 8, k x n row-major), c and d
// (16 x 8 row-major f32); each lane loads its own registers from global memory by the PTX
// layout, no ldmatrix.
__global__ void mma_by_layout_kernel(const bf16* a, const bf16* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  const auto a2 = [&](int r, int k) { return pack(a[r * 16 + k], a[r * 16 + k + 1]); };
  const auto b2 = [&](int k, int n) { return pack(b[k * 8 + n], b[(k + 1) * 8 + n]); };
  const uint32_t fa[4] = {a2(g, 2 * t), a2(g + 8, 2 * t), a2(g, 2 * t + 8), a2(g + 8, 2 * t + 8)};
  const uint32_t fb[2] = {b2(2 * t, g), b2(2 * t + 8, g)};
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                  c[(g + 8) * 8 + 2 * t + 1]};
  mma::mma_m16n8k16(acc, fa, fb);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// The row (of a 16 x 16 tile in shared memory, leading dimension kLd) and column (0 or 8) whose
// address lane l gives to ldmatrix: a scrambled assignment, so that the test sees which lane's
// address serves which matrix row.
constexpr int kLd = 24;  // 48-byte rows: 16-byte aligned
__host__ __device__ int ld_row(int l) {
  return (l * 5 + 3) % 16;
}
__host__ __device__ int ld_col(int l) {
  return 8 * ((l / 3) % 2);
}

// One warp: the 16 x 16 tile m (row-major, ld 16) into shared memory with ld kLd, then all four
// ldmatrix variants; out[variant][lane][j] = register j (x2: j < 2).
__global__ void ldmatrix_kernel(const bf16* m, uint32_t* out) {
  TRIDENT_DYNAMIC_SHARED(bf16, s);
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) s[(i / 16) * kLd + i % 16] = m[i];
  __syncwarp();
  const bf16* row = s + ld_row(lane) * kLd + ld_col(lane);
  uint32_t r4[4], r4t[4], r2[2], r2t[2];
  mma::ldmatrix_x4(r4, row);
  mma::ldmatrix_x4_trans(r4t, row);
  mma::ldmatrix_x2(r2, row);
  mma::ldmatrix_x2_trans(r2t, row);
  for (int j = 0; j < 4; ++j) out[(0 * 32 + lane) * 4 + j] = r4[j];
  for (int j = 0; j < 4; ++j) out[(1 * 32 + lane) * 4 + j] = r4t[j];
  for (int j = 0; j < 2; ++j) out[(2 * 32 + lane) * 4 + j] = r2[j];
  for (int j = 0; j < 2; ++j) out[(3 * 32 + lane) * 4 + j] = r2t[j];
}

// One warp, the attention pattern: s = q kt^T (q 16 x 16, kt 16 x 16 as n x k rows, so two n8
// tiles), p = bf16(s) as an A fragment straight from the accumulators, o = p v (v 16 x 8, k x n
// rows). Operands through ldmatrix from shared memory. s_out (16 x 16) and o (16 x 8) f32.
__global__ void attention_pattern_kernel(const bf16* q, const bf16* kt, const bf16* v, float* s_out,
                                         float* o) {
  TRIDENT_DYNAMIC_SHARED(bf16, sm);
  bf16* sq = sm;
  bf16* sk = sm + 256;
  bf16* sv = sm + 512;
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  for (int i = lane; i < 256; i += 32) {
    sq[i] = q[i];
    sk[i] = kt[i];
  }
  for (int i = lane; i < 128; i += 32) sv[i] = v[i];
  __syncwarp();
  uint32_t fq[4], fk[4], fv[2];
  mma::ldmatrix_x4(fq, sq + (lane % 16) * 16 + 8 * (lane / 16));
  // Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
  mma::ldmatrix_x4(fk, sk + (lane % 8 + 8 * (lane / 16)) * 16 + 8 * ((lane / 8) % 2));
  mma::ldmatrix_x2_trans(fv, sv + (lane % 16) * 8);
  float s0[4] = {0, 0, 0, 0}, s1[4] = {0, 0, 0, 0};
  const uint32_t fk0[2] = {fk[0], fk[1]}, fk1[2] = {fk[2], fk[3]};
  mma::mma_m16n8k16(s0, fq, fk0);
  mma::mma_m16n8k16(s1, fq, fk1);
  const float* acc[2] = {s0, s1};
  for (int n = 0; n < 2; ++n) {
    s_out[g * 16 + n * 8 + 2 * t] = acc[n][0];
    s_out[g * 16 + n * 8 + 2 * t + 1] = acc[n][1];
    s_out[(g + 8) * 16 + n * 8 + 2 * t] = acc[n][2];
    s_out[(g + 8) * 16 + n * 8 + 2 * t + 1] = acc[n][3];
  }
  const uint32_t p[4] = {mma::pack_bf16(s0[0], s0[1]), mma::pack_bf16(s0[2], s0[3]),
                         mma::pack_bf16(s1[0], s1[1]), mma::pack_bf16(s1[2], s1[3])};
  float out[4] = {0, 0, 0, 0};
  mma::mma_m16n8k16(out, p, fv);
  o[g * 8 + 2 * t] = out[0];
  o[g * 8 + 2 * t + 1] = out[1];
  o[(g + 8) * 8 + 2 * t] = out[2];
  o[(g + 8) * 8 + 2 * t + 1] = out[3];
}

enum class Misuse { SkipMma, Misaligned, Global };
__global__ void mma_misuse_kernel(const bf16* g, float* d, Misuse misuse) {
  TRIDENT_DYNAMIC_SHARED(bf16, s);
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) s[i] = g[i];
  __syncwarp();
  const bf16* row = s + (lane % 16) * 16 + 8 * (lane / 16);
  if (misuse == Misuse::Misaligned && lane == 9) row += 4;  // 8 bytes off
  if (misuse == Misuse::Global) row = g + (lane % 16) * 16 + 8 * (lane / 16);
  uint32_t a[4];
  mma::ldmatrix_x4(a, row);
  float acc[4] = {0, 0, 0, 0};
  const uint32_t b[2] = {a[0], a[1]};
  if (misuse != Misuse::SkipMma || lane != 6) mma::mma_m16n8k16(acc, a, b);
  __syncwarp();
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

}  // namespace

TEST_CASE("mma.sync m16n8k16: the documented fragment layouts, summed in k order",
          "[cuda-emu][mma-sync]") {
  std::mt19937 rng(7);
  const std::vector<bf16> a = random_bf16(256, rng), b = random_bf16(128, rng);
  std::vector<float> c(128);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (float& x : c) x = u(rng);
  DeviceArray<bf16> d_a(a), d_b(b);
  DeviceArray<float> d_c(c), d_d(128);
  TRIDENT_LAUNCH(mma_by_layout_kernel, 1, 32, 0, nullptr)(d_a.p, d_b.p, d_c.p, d_d.p);
  check(cudaGetLastError());
  const std::vector<float> got = d_d.get();
  int bad = 0;
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      float want = c[r * 8 + n];
      for (int k = 0; k < 16; ++k) want += f(a[r * 16 + k]) * f(b[k * 8 + n]);
      if (got[r * 8 + n] != want) {
        if (bad++ < 5)
          UNSCOPED_INFO("d(" << r << "," << n << ") " << got[r * 8 + n] << " want " << want);
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("ldmatrix x4 / x2, plain and .trans: each lane's registers as documented",
          "[cuda-emu][mma-sync]") {
  std::mt19937 rng(11);
  const std::vector<bf16> m = random_bf16(256, rng);
  DeviceArray<bf16> d_m(m);
  DeviceArray<uint32_t> d_out(4 * 32 * 4);
  check(cudaMemset(d_out.p, 0, 4 * 32 * 4 * sizeof(uint32_t)));
  TRIDENT_LAUNCH(ldmatrix_kernel, 1, 32, 16 * kLd * sizeof(bf16), nullptr)(d_m.p, d_out.p);
  check(cudaGetLastError());
  const std::vector<uint32_t> got = d_out.get();
  const char* names[4] = {"x4", "x4.trans", "x2", "x2.trans"};
  int bad = 0;
  for (int variant = 0; variant < 4; ++variant) {
    const bool trans = variant % 2 == 1;
    const int matrices = variant < 2 ? 4 : 2;
    for (int lane = 0; lane < 32; ++lane) {
      for (int j = 0; j < matrices; ++j) {
        // Element (mr, mc) of matrix j lies in the row whose address lane 8j + mr gave.
        const auto elem = [&](int mr, int mc) {
          const int src = 8 * j + mr;
          return m[ld_row(src) * 16 + ld_col(src) + mc];
        };
        const uint32_t want =
            trans ? pack(elem(2 * (lane % 4), lane / 4), elem(2 * (lane % 4) + 1, lane / 4))
                  : pack(elem(lane / 4, 2 * (lane % 4)), elem(lane / 4, 2 * (lane % 4) + 1));
        const uint32_t g = got[(variant * 32 + lane) * 4 + j];
        if (g != want && bad++ < 5) {
          UNSCOPED_INFO(names[variant] << " lane " << lane << " r[" << j << "] " << std::hex << g
                                       << " want " << want << std::dec);
        }
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("mma.sync: ldmatrix operands and an accumulator pair reused as an A fragment",
          "[cuda-emu][mma-sync]") {
  std::mt19937 rng(13);
  const std::vector<bf16> q = random_bf16(256, rng), kt = random_bf16(256, rng),
                          v = random_bf16(128, rng);
  DeviceArray<bf16> d_q(q), d_k(kt), d_v(v);
  DeviceArray<float> d_s(256), d_o(128);
  TRIDENT_LAUNCH(attention_pattern_kernel, 1, 32, 640 * sizeof(bf16), nullptr)
  (d_q.p, d_k.p, d_v.p, d_s.p, d_o.p);
  check(cudaGetLastError());
  const std::vector<float> s = d_s.get(), o = d_o.get();
  int bad = 0;
  std::vector<float> p(256);
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 16; ++n) {
      float want = 0.0f;
      for (int k = 0; k < 16; ++k) want += f(q[r * 16 + k]) * f(kt[n * 16 + k]);
      if (s[r * 16 + n] != want && bad++ < 5) {
        UNSCOPED_INFO("s(" << r << "," << n << ") " << s[r * 16 + n] << " want " << want);
      }
      p[r * 16 + n] = f(__float2bfloat16_rn(want));
    }
  }
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      float want = 0.0f;
      for (int k = 0; k < 16; ++k) want += p[r * 16 + k] * f(v[k * 8 + n]);
      if (o[r * 8 + n] != want && bad++ < 5) {
        UNSCOPED_INFO("o(" << r << "," << n << ") " << o[r * 8 + n] << " want " << want);
      }
    }
  }
  CHECK(bad == 0);
  CHECK(mma::pack_bf16(1.0f, -2.0f) == 0xC0003F80u);
  CHECK(mma::pack_bf16(1.00390625f, 0.0f) == 0x3F80u);  // halfway: rounds to even (1.0)
}

TEST_CASE("mma.sync / ldmatrix faults: a skipping lane, a misaligned or non-shared row",
          "[cuda-emu][mma-sync]") {
  std::mt19937 rng(17);
  DeviceArray<bf16> g(random_bf16(256, rng));
  DeviceArray<float> d(128);
  const size_t smem = 256 * sizeof(bf16);
  TRIDENT_LAUNCH(mma_misuse_kernel, 1, 32, smem, nullptr)(g.p, d.p, Misuse::SkipMma);
  std::string msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("mma_misuse_kernel") &&
                      Catch::Contains("mma.sync.aligned.m16n8k16") &&
                      Catch::Contains("test_mma_sync_emu.cpp:") && Catch::Contains("lane 6)"));
  TRIDENT_LAUNCH(mma_misuse_kernel, 1, 32, smem, nullptr)(g.p, d.p, Misuse::Misaligned);
  msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane 9") &&
                      Catch::Contains("not 16-byte aligned") &&
                      Catch::Contains("test_mma_sync_emu.cpp:"));
  TRIDENT_LAUNCH(mma_misuse_kernel, 1, 32, smem, nullptr)(g.p, d.p, Misuse::Global);
  msg = expect_fault();
  CHECK_THAT(msg, Catch::Contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane ") &&
                      Catch::Contains("not 16 bytes of the block's shared memory"));
}
