// Causal multi-head self-attention on a fused QKV buffer.
// qkv (B, T, 3C) row-major, token t = [q(C) | k(C) | v(C)], head h owns columns h*hs..h*hs+hs
// of each part; out (B, T, C); att (B, NH, T, T) holds P = softmax(q k^T * scale + causal mask),
// zero above the diagonal; scale = 1/sqrt(hs).
// Each (b, h) pair is independent: threads take pairs, gather the head's q, k, v into
// contiguous (T, hs) scratch and run Eigen products on them. Rows go in blocks of kRowBlock so
// that only the causal (lower) part of S = q k^T and of P v is ever computed.
// The softmax runs on S rows in an aligned scratch (row stride a multiple of kAlignElems), never
// in place in `att`: Eigen peels unaligned leading elements off its vectorised exp and sum, so
// in place the result would depend on where the caller's buffer happens to start.
// Backward, per pair, with dO = dout for the head:
//   dP = dO v^T, dV = P^T dO, dS = P * (dP - rowsum(dP * P)), dQ = dS k * scale,
//   dK = dS^T q * scale.
#include "trident/kernels/cpu/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.hpp"

namespace trident::kernels::cpu {
namespace {

using detail::ConstMatrixMap;
using detail::MatrixMap;

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

// Copies the (T, hs) slab starting at column `col` of one batch row of a (T, 3C) buffer into
// contiguous dst (gather), or a contiguous slab back into it (scatter).
template <typename T>
void gather_head(T* dst, const T* qkv_b, int64_t T_, int64_t C, int64_t hs, int64_t col) {
  for (int64_t t = 0; t < T_; ++t) {
    const T* src = qkv_b + t * 3 * C + col;
    std::copy(src, src + hs, dst + t * hs);
  }
}
template <typename T>
void scatter_head(T* dqkv_b, const T* src, int64_t T_, int64_t C, int64_t hs, int64_t col) {
  for (int64_t t = 0; t < T_; ++t) {
    std::copy(src + t * hs, src + (t + 1) * hs, dqkv_b + t * 3 * C + col);
  }
}

// Decides whether to spread (b, h) pairs over threads: worthwhile when there are several pairs
// and enough work; otherwise Eigen may thread the products of a single pair.
bool parallel_over_pairs(int64_t pairs, int64_t T_, int64_t hs) {
  return pairs > 1 && !omp_in_parallel() && omp_get_max_threads() > 1 &&
         pairs * T_ * T_ * hs > detail::kParallelGrain;
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH) {
  check_heads("attention_forward", C, NH);
  const int64_t hs = C / NH, pairs = B * NH;
  if (pairs == 0 || T_ == 0) return;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
#pragma omp parallel if (parallel_over_pairs(pairs, T_, hs))
  {
    const int64_t ld = (T_ + kAlignElems - 1) / kAlignElems * kAlignElems;
    const int64_t th = (T_ * hs + kAlignElems - 1) / kAlignElems * kAlignElems;
    AlignedVector<T> scratch(static_cast<size_t>(3 * th + std::min(kRowBlock, T_) * ld));
    T* qs = scratch.data();
    T* ks = qs + th;
    T* vs = ks + th;
    T* ss = vs + th;  // S rows of one block, stride ld
    const ConstMatrixMap<T> Q(qs, T_, hs, Eigen::OuterStride<>(hs));
    const ConstMatrixMap<T> K(ks, T_, hs, Eigen::OuterStride<>(hs));
    const ConstMatrixMap<T> V(vs, T_, hs, Eigen::OuterStride<>(hs));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t b = p / NH, h = p % NH;
      const T* qkv_b = qkv + b * T_ * 3 * C;
      gather_head(qs, qkv_b, T_, C, hs, h * hs);
      gather_head(ks, qkv_b, T_, C, hs, C + h * hs);
      gather_head(vs, qkv_b, T_, C, hs, 2 * C + h * hs);
      T* P = att + p * T_ * T_;
      MatrixMap<T> Pm(P, T_, T_, Eigen::OuterStride<>(T_));
      for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
        const int64_t n = std::min(kRowBlock, T_ - r0), r1 = r0 + n;
        MatrixMap<T> S(ss, n, r1, Eigen::OuterStride<>(ld));
        S.noalias() = scale * Q.middleRows(r0, n) * K.topRows(r1).transpose();
        for (int64_t t = r0; t < r1; ++t) {
          detail::ArrayMap<T> live(ss + (t - r0) * ld, t + 1);
          const T mx = live.maxCoeff();
          live = (live - mx).exp();
          T* row = P + t * T_;
          detail::ArrayMap<T>(row, t + 1) = live * (T(1) / live.sum());
          std::fill(row + t + 1, row + T_, T(0));
        }
        MatrixMap<T> O(out + (b * T_ + r0) * C + h * hs, n, hs, Eigen::OuterStride<>(C));
        O.noalias() = Pm.block(r0, 0, n, r1) * V.topRows(r1);
      }
    }
  }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int64_t B, int64_t T_,
                        int64_t C, int64_t NH) {
  check_heads("attention_backward", C, NH);
  const int64_t hs = C / NH, pairs = B * NH;
  if (pairs == 0 || T_ == 0) return;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
#pragma omp parallel if (parallel_over_pairs(pairs, T_, hs))
  {
    const int64_t th = T_ * hs;
    std::vector<T> scratch(static_cast<size_t>(7 * th + std::min(kRowBlock, T_) * T_));
    T* qs = scratch.data();
    T* ks = qs + th;
    T* vs = ks + th;
    T* dos = vs + th;
    T* dqs = dos + th;
    T* dks = dqs + th;
    T* dvs = dks + th;
    T* dss = dvs + th;
    const ConstMatrixMap<T> Q(qs, T_, hs, Eigen::OuterStride<>(hs));
    const ConstMatrixMap<T> K(ks, T_, hs, Eigen::OuterStride<>(hs));
    const ConstMatrixMap<T> V(vs, T_, hs, Eigen::OuterStride<>(hs));
    const ConstMatrixMap<T> dO(dos, T_, hs, Eigen::OuterStride<>(hs));
    MatrixMap<T> dQ(dqs, T_, hs, Eigen::OuterStride<>(hs));
    MatrixMap<T> dK(dks, T_, hs, Eigen::OuterStride<>(hs));
    MatrixMap<T> dV(dvs, T_, hs, Eigen::OuterStride<>(hs));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t b = p / NH, h = p % NH;
      const T* qkv_b = qkv + b * T_ * 3 * C;
      gather_head(qs, qkv_b, T_, C, hs, h * hs);
      gather_head(ks, qkv_b, T_, C, hs, C + h * hs);
      gather_head(vs, qkv_b, T_, C, hs, 2 * C + h * hs);
      for (int64_t t = 0; t < T_; ++t) {
        const T* src = dout + (b * T_ + t) * C + h * hs;
        std::copy(src, src + hs, dos + t * hs);
      }
      dK.setZero();
      dV.setZero();
      const T* P = att + p * T_ * T_;
      const ConstMatrixMap<T> Pm(P, T_, T_, Eigen::OuterStride<>(T_));
      for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
        const int64_t n = std::min(kRowBlock, T_ - r0), r1 = r0 + n;
        const auto Pb = Pm.block(r0, 0, n, r1);
        MatrixMap<T> dS(dss, n, r1, Eigen::OuterStride<>(r1));
        dS.noalias() = dO.middleRows(r0, n) * V.topRows(r1).transpose();  // dP
        for (int64_t i = 0; i < n; ++i) {
          // P is zero past the diagonal, so dS is too.
          const T dot = (dS.row(i).array() * Pb.row(i).array()).sum();
          dS.row(i).array() = Pb.row(i).array() * (dS.row(i).array() - dot);
        }
        dV.topRows(r1).noalias() += Pb.transpose() * dO.middleRows(r0, n);
        dQ.middleRows(r0, n).noalias() = scale * dS * K.topRows(r1);
        dK.topRows(r1).noalias() += scale * dS.transpose() * Q.middleRows(r0, n);
      }
      T* dqkv_b = dqkv + b * T_ * 3 * C;
      scatter_head(dqkv_b, dqs, T_, C, hs, h * hs);
      scatter_head(dqkv_b, dks, T_, C, hs, C + h * hs);
      scatter_head(dqkv_b, dvs, T_, C, hs, 2 * C + h * hs);
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
