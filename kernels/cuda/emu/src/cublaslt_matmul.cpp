// Trident's CUDA emulation: the CPU execution of one cuBLASLt matmul (cublaslt_matmul.hpp).
//
// Per batch: op(A) is copied into an m x k and op(B) into a k x n column-major float buffer
// (A's rows padded with zeros to a multiple of the 64-row tile), the product is accumulated in
// float in tiles of 64 rows x 4 columns of D, each element summed in increasing k (the same
// order for every element, so the result does not depend on tiles or threads), then
// alpha * product + beta * C [+ bias], the activation and the bias-gradient sums are applied in
// float and every output is rounded once to its storage type. alpha == 0 does not read A and B,
// beta == 0 does not read C. The product accumulates in the workspace when the algorithm's
// workspace holds it (so two streams sharing a workspace at once corrupt each other, as on a
// GPU); a smaller workspace is overwritten.
#include "cublaslt_matmul.hpp"

#include <cuda_bf16.h>
#include <library_types.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace cuemu::lt {
namespace {

inline float to_float(float x) {
  return x;
}
inline float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename T>
T from_float(float x);
template <>
inline float from_float<float>(float x) {
  return x;
}
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
inline float gelu(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(u));
}
inline float gelu_grad(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float t = std::tanh(u);
  return 0.5f * (1.0f + t) +
         0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
}

// out (rows x cols, column-major, ld = out_ld) = the matrix whose (r, c) is src[r * rs + c * cs].
template <typename T>
void gather(const T* src, int64_t rs, int64_t cs, int64_t rows, int64_t cols, float* out,
            int64_t out_ld) {
  for (int64_t c = 0; c < cols; ++c) {
    const T* s = src + c * cs;
    float* o = out + c * out_ld;
    if (rs == 1) {
      for (int64_t r = 0; r < rows; ++r) o[r] = to_float(s[r]);
    } else {
      for (int64_t r = 0; r < rows; ++r) o[r] = to_float(s[r * rs]);
    }
  }
}

// acc (m x n, column-major, ld m) = a (m x k, column-major, ld lda, rows padded with zeros to
// lda, a multiple of kRows) times b (k x n, column-major, ld k). Each output element is summed
// in increasing k, in float.
constexpr int64_t kRows = 64;
constexpr int64_t kCols = 4;
void multiply(const float* a, int64_t lda, const float* b, float* acc, int64_t m, int64_t n,
              int64_t k) {
  const int64_t col_blocks = (n + kCols - 1) / kCols;
  const bool parallel = m * n * k >= (int64_t{1} << 18);
  (void)parallel;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (parallel)
#endif
  for (int64_t jb = 0; jb < col_blocks; ++jb) {
    const int64_t j0 = jb * kCols;
    const int64_t nc = std::min(kCols, n - j0);
    for (int64_t i0 = 0; i0 < m; i0 += kRows) {
      float t[kCols][kRows] = {};
      if (nc == kCols) {
        const float* b0 = b + (j0 + 0) * k;
        const float* b1 = b + (j0 + 1) * k;
        const float* b2 = b + (j0 + 2) * k;
        const float* b3 = b + (j0 + 3) * k;
        for (int64_t p = 0; p < k; ++p) {
          const float* ap = a + p * lda + i0;
          const float x0 = b0[p], x1 = b1[p], x2 = b2[p], x3 = b3[p];
          for (int64_t i = 0; i < kRows; ++i) {
            const float v = ap[i];
            t[0][i] += v * x0;
            t[1][i] += v * x1;
            t[2][i] += v * x2;
            t[3][i] += v * x3;
          }
        }
      } else {
        for (int64_t c = 0; c < nc; ++c) {
          const float* bc = b + (j0 + c) * k;
          for (int64_t p = 0; p < k; ++p) {
            const float* ap = a + p * lda + i0;
            const float x = bc[p];
            for (int64_t i = 0; i < kRows; ++i) t[c][i] += ap[i] * x;
          }
        }
      }
      const int64_t nr = std::min(kRows, m - i0);
      for (int64_t c = 0; c < nc; ++c) {
        std::copy(t[c], t[c] + nr, acc + (j0 + c) * m + i0);
      }
    }
  }
}

template <typename TIn, typename TOut>
void run_typed(const Problem& p) {
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t lda = (m + kRows - 1) / kRows * kRows;
  const bool product = p.alpha != 0.0f && k > 0;
  std::vector<float> a(static_cast<size_t>(product || p.bias_grad == BiasGrad::kOfA ? lda * k : 0),
                       0.0f);
  std::vector<float> b(static_cast<size_t>(product || p.bias_grad == BiasGrad::kOfB ? k * n : 0));
  std::vector<float> local;
  float* acc = nullptr;
  if (p.workspace_bytes >= size_t(m) * size_t(n) * sizeof(float) &&
      reinterpret_cast<uintptr_t>(p.workspace) % alignof(float) == 0) {
    acc = static_cast<float*>(p.workspace);
  } else {
    if (p.workspace_bytes > 0) std::memset(p.workspace, 0xff, p.workspace_bytes);
    local.resize(size_t(m) * size_t(n));
    acc = local.data();
  }
  std::vector<float> bias_sum(p.bias_grad != BiasGrad::kNone ? size_t(p.bias_length) : 0);

  for (int32_t batch = 0; batch < p.d.batch; ++batch) {
    const TIn* A = static_cast<const TIn*>(p.A) + batch * p.a.batch_stride;
    const TIn* B = static_cast<const TIn*>(p.B) + batch * p.b.batch_stride;
    const TOut* C =
        p.beta != 0.0f ? static_cast<const TOut*>(p.C) + batch * p.c.batch_stride : nullptr;
    TOut* D = static_cast<TOut*>(p.D) + batch * p.d.batch_stride;
    // op(A)(i, l) is A(i, l), or A(l, i) when transposed; likewise op(B).
    if (!a.empty()) {
      gather(A, p.trans_a ? p.a.col_stride : p.a.row_stride,
             p.trans_a ? p.a.row_stride : p.a.col_stride, m, k, a.data(), lda);
    }
    if (!b.empty()) {
      gather(B, p.trans_b ? p.b.col_stride : p.b.row_stride,
             p.trans_b ? p.b.row_stride : p.b.col_stride, k, n, b.data(), k);
    }
    if (product) multiply(a.data(), lda, b.data(), acc, m, n, k);

    const TOut* bias_in =
        p.bias_in ? static_cast<const TOut*>(p.bias) + batch * p.bias_batch_stride : nullptr;
    TOut* aux = p.aux_in || p.aux_out
                    ? static_cast<TOut*>(const_cast<void*>(p.aux)) + batch * p.aux_batch_stride
                    : nullptr;
    std::fill(bias_sum.begin(), bias_sum.end(), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        float v = product ? p.alpha * acc[j * m + i] : 0.0f;
        if (C != nullptr) v += p.beta * to_float(C[i * p.c.row_stride + j * p.c.col_stride]);
        if (bias_in != nullptr) v += to_float(bias_in[i]);
        switch (p.activation) {
          case Activation::kNone:
            break;
          case Activation::kRelu:
            v = v > 0.0f ? v : 0.0f;
            break;
          case Activation::kGelu:
            if (p.aux_out) aux[i + j * p.aux_ld] = from_float<TOut>(v);
            v = gelu(v);
            break;
          case Activation::kDgelu:
            v *= gelu_grad(to_float(aux[i + j * p.aux_ld]));
            break;
        }
        if (p.bias_grad == BiasGrad::kOfD) bias_sum[size_t(i)] += v;
        D[i * p.d.row_stride + j * p.d.col_stride] = from_float<TOut>(v);
      }
    }
    if (p.bias_grad == BiasGrad::kOfA) {  // row sums of op(A) over k
      for (int64_t l = 0; l < k; ++l) {
        for (int64_t i = 0; i < m; ++i) bias_sum[size_t(i)] += a[size_t(l * lda + i)];
      }
    } else if (p.bias_grad == BiasGrad::kOfB) {  // column sums of op(B) over k
      for (int64_t j = 0; j < n; ++j) {
        float s = 0.0f;
        for (int64_t l = 0; l < k; ++l) s += b[size_t(j * k + l)];
        bias_sum[size_t(j)] = s;
      }
    }
    if (p.bias_grad != BiasGrad::kNone) {
      TOut* out = static_cast<TOut*>(const_cast<void*>(p.bias)) + batch * p.bias_batch_stride;
      for (int64_t i = 0; i < p.bias_length; ++i) out[i] = from_float<TOut>(bias_sum[size_t(i)]);
    }
  }
}

}  // namespace

void run_matmul(const Problem& p) {
  if (p.a.type == CUDA_R_32F) {
    run_typed<float, float>(p);
  } else if (p.d.type == CUDA_R_16BF) {
    run_typed<__nv_bfloat16, __nv_bfloat16>(p);
  } else {
    run_typed<__nv_bfloat16, float>(p);
  }
}

}  // namespace cuemu::lt
