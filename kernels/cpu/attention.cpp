// Causal multi-head self-attention on a fused QKV buffer.
// qkv (B, T, 3C) row-major, token t = [q(C) | k(C) | v(C)], head h owns columns h*hs..h*hs+hs
// of each part; out (B, T, C); att (B, NH, T, T) holds P = softmax(q k^T * scale + causal mask),
// zero above the diagonal; scale = 1/sqrt(hs).
// Each (b, h) pair is independent: threads take pairs and run the products through gemm
// (single-threaded inside the pairs' threads) on the head's columns in place, row stride 3C (its
// packing gathers them). Rows go in blocks of kRowBlock so that only the causal (lower) part of
// S = q k^T and of P v is ever computed.
// The softmax runs on S rows in an aligned scratch (row stride a multiple of kAlignElems), never
// in place in `att`: Eigen peels unaligned leading elements off its vectorised exp and sum, so
// in place the result would depend on where the caller's buffer happens to start.
// Backward, per pair, with dO = dout for the head:
//   dP = dO v^T, dV = P^T dO, dS = P * (dP - rowsum(dP * P)), dQ = dS k * scale,
//   dK = dS^T q * scale; dK and dV accumulate over row blocks in place in dqkv.
// gemm's results do not depend on the thread count, so neither do attention's.
#include "trident/kernels/cpu/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.hpp"
#include "trident/kernels/cpu/gemm.hpp"

namespace trident::kernels::cpu {
namespace {

constexpr int64_t kRowBlock = 64;
// Scratch rows start on 64-byte boundaries (a whole number of SIMD packets of float or double).
constexpr int64_t kAlignElems = 16;

template <typename T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

void check_heads(const char* who, int64_t C, int64_t NH) {
  if (NH <= 0 || C % NH != 0) {
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(NH) +
                                " heads do not divide the channel count C = " + std::to_string(C));
  }
}

// Decides whether to spread (b, h) pairs over threads: worthwhile when there are several pairs
// and enough work; otherwise gemm may thread the products of a single pair.
bool parallel_over_pairs(int64_t pairs, int64_t T_, int64_t hs) {
  return pairs > 1 && !omp_in_parallel() && omp_get_max_threads() > 1 &&
         pairs * T_ * T_ * hs > detail::kParallelGrain;
}

// Row stride of the (kRowBlock, T) scratch for S or dS.
int64_t scratch_stride(int64_t T_) {
  return (T_ + kAlignElems - 1) / kAlignElems * kAlignElems;
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH) {
  check_heads("attention_forward", C, NH);
  const int64_t hs = C / NH, pairs = B * NH, ld3 = 3 * C;
  if (pairs == 0 || T_ == 0) return;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
#pragma omp parallel if (parallel_over_pairs(pairs, T_, hs))
  {
    const int64_t ld = scratch_stride(T_);
    AlignedVector<T> scratch(static_cast<size_t>(std::min(kRowBlock, T_) * ld));
    T* ss = scratch.data();  // S rows of one block
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t b = p / NH, h = p % NH;
      const T* q = qkv + b * T_ * ld3 + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* P = att + p * T_ * T_;
      for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
        const int64_t n = std::min(kRowBlock, T_ - r0), r1 = r0 + n;
        gemm<T>(false, true, n, r1, hs, scale, q + r0 * ld3, ld3, k, ld3, T(0), ss, ld);
        for (int64_t t = r0; t < r1; ++t) {
          detail::ArrayMap<T> live(ss + (t - r0) * ld, t + 1);
          const T mx = live.maxCoeff();
          live = (live - mx).exp();
          T* row = P + t * T_;
          detail::ArrayMap<T>(row, t + 1) = live * (T(1) / live.sum());
          std::fill(row + t + 1, row + T_, T(0));
        }
        gemm<T>(false, false, n, hs, r1, T(1), P + r0 * T_, T_, v, ld3, T(0),
                out + (b * T_ + r0) * C + h * hs, C);
      }
    }
  }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int64_t B, int64_t T_,
                        int64_t C, int64_t NH) {
  check_heads("attention_backward", C, NH);
  const int64_t hs = C / NH, pairs = B * NH, ld3 = 3 * C;
  if (pairs == 0 || T_ == 0) return;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
#pragma omp parallel if (parallel_over_pairs(pairs, T_, hs))
  {
    const int64_t ld = scratch_stride(T_);
    AlignedVector<T> scratch(static_cast<size_t>(std::min(kRowBlock, T_) * ld));
    T* dss = scratch.data();  // dP, then dS, of one block
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t b = p / NH, h = p % NH;
      const T* q = qkv + b * T_ * ld3 + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      const T* dO = dout + b * T_ * C + h * hs;
      T* dq = dqkv + b * T_ * ld3 + h * hs;
      T* dk = dq + C;
      T* dv = dq + 2 * C;
      for (int64_t t = 0; t < T_; ++t) {
        std::fill(dk + t * ld3, dk + t * ld3 + hs, T(0));
        std::fill(dv + t * ld3, dv + t * ld3 + hs, T(0));
      }
      const T* P = att + p * T_ * T_;
      for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
        const int64_t n = std::min(kRowBlock, T_ - r0), r1 = r0 + n;
        const T* Pb = P + r0 * T_;  // rows r0..r1, columns 0..r1
        gemm<T>(false, true, n, r1, hs, T(1), dO + r0 * C, C, v, ld3, T(0), dss, ld);  // dP
        for (int64_t i = 0; i < n; ++i) {
          // P is zero past the diagonal, so dS is too.
          detail::ArrayMap<T> ds(dss + i * ld, r1);
          const detail::ConstArrayMap<T> pr(Pb + i * T_, r1);
          const T dot = (ds * pr).sum();
          ds = pr * (ds - dot);
        }
        gemm<T>(true, false, r1, hs, n, T(1), Pb, T_, dO + r0 * C, C, T(1), dv, ld3);
        gemm<T>(false, false, n, hs, r1, scale, dss, ld, k, ld3, T(0), dq + r0 * ld3, ld3);
        gemm<T>(true, false, r1, hs, n, scale, dss, ld, q + r0 * ld3, ld3, T(1), dk, ld3);
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int64_t, int64_t, int64_t,
                                       int64_t);
template void attention_forward<double>(double*, double*, const double*, int64_t, int64_t, int64_t,
                                        int64_t);
template void attention_backward<float>(float*, const float*, const float*, const float*, int64_t,
                                        int64_t, int64_t, int64_t);
template void attention_backward<double>(double*, const double*, const double*, const double*,
                                         int64_t, int64_t, int64_t, int64_t);

}  // namespace trident::kernels::cpu
