// Softmax cross entropy; probabilities are never stored. logits (N, V) row-major (f32 or bf16),
// targets (N); losses, lse, dlosses and the slice statistics are f32 whatever the logits' type
// (a bf16 lse near 10 would be off by up to 0.03, every probability exp(x - lse) by 3%).
// Forward: one 256-thread block per row: max (block reduction), then sum exp(x - max),
// lse = max + log(sum), loss = lse - x[target] (0 for target < 0). Backward: one block per row
// recomputes exp(x - lse) from the saved lse: dx = (p - [j == target - vocab_start]) * dloss,
// zero rows for ignored targets. All arithmetic in fp32.
// Vocabulary-parallel forward: shard_stats is the forward's row pass over one slice, writing
// {max, sum exp(x - max), target logit, holds target} (N, 4); combine (a thread per row) merges
// the all-gathered slices, online-softmax style. mean: one block sums the losses of the
// non-ignored rows in double and writes the mean and 1 / count on the device.
// Fused classifier (llm.c's fused_classifier): one block of 1024 threads per row makes one online
// pass over the first `vocab` columns (each thread a running max m and sum s of exp(x - m) in
// f32, rescaled when m grows; then merged over the block), giving lse and the loss; with a
// gradient it then rereads the row (from L2 at GPT-2 sizes) and writes (p - onehot) * dloss over
// the logits, zeros in the padding columns [vocab, V): no dlogits buffer exists. dloss, one
// device float, is grad_scale / max(1, count of targets >= 0), written first by one block.
// 16-byte loads and stores (vec.cuh) when the logits are 16-byte aligned and V is a multiple of
// the pack (8 bf16, 4 f32; GPT-2's padded 50304): each thread takes whole packs of the first
// vocab columns, then the scalar tail up to vocab, and writes the gradient row in packs;
// element by element otherwise. The rescale by the backward's factor goes in packs too.
#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/cross_entropy.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {
namespace {

using detail::check_launch;
using detail::from_float;
using detail::load_f;
using detail::store_f;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int kMeanThreads = 1024;

// The max of a row and the sum of exp(x - max), by the whole block; every thread gets both.
// `sh` holds 32 floats of shared scratch.
template <typename T>
__device__ void row_max_sum_exp(const T* x, int64_t V, float* sh, float& mx, float& sum) {
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, to_float(x[j]));
  m = detail::block_max(m, sh);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(to_float(x[j]) - m);
  sum = detail::block_sum(s, sh);
  mx = m;
}

template <typename T>
__global__ void cross_entropy_forward_kernel(float* losses, float* lse, const T* logits,
                                             const int32_t* targets, int64_t N, int64_t V,
                                             int32_t* bad_position) {
  TRIDENT_SHARED(float, sh, [32]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * V;
    float mx, s;
    row_max_sum_exp(x, V, sh, mx, s);
    if (threadIdx.x == 0) {
      const float l = mx + logf(s);
      const int32_t t = targets[r];
      float loss = 0.0f;
      if (t >= V) {
        atomicMin(bad_position, static_cast<int32_t>(min(r, int64_t{kNoBadIndex})));
      } else if (t >= 0) {
        loss = l - to_float(x[t]);
      }
      lse[r] = l;
      losses[r] = loss;
    }
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse,
                                              const int32_t* targets, const float* dlosses,
                                              int64_t N, int64_t V, int64_t vocab_start) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * V;
    T* dx = dlogits + r * V;
    if (targets[r] < 0) {
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dx[j] = from_float<T>(0.0f);
      continue;
    }
    const int64_t t = targets[r] - vocab_start;  // outside [0, V): another slice's target
    const float l = lse[r], dl = dlosses[r];
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float p = expf(to_float(x[j]) - l);
      dx[j] = from_float<T>((p - (j == t ? 1.0f : 0.0f)) * dl);
    }
  }
}

template <typename T>
__global__ void cross_entropy_shard_stats_kernel(float* stats, const T* logits,
                                                 const int32_t* targets, int64_t N, int64_t V,
                                                 int64_t vocab_start) {
  TRIDENT_SHARED(float, sh, [32]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* x = logits + r * V;
    float mx, s;
    row_max_sum_exp(x, V, sh, mx, s);
    if (threadIdx.x == 0) {
      const int64_t t = targets[r] - vocab_start;
      const bool held = targets[r] >= 0 && t >= 0 && t < V;
      float* out = stats + r * 4;
      out[0] = mx;
      out[1] = s;
      out[2] = held ? to_float(x[t]) : 0.0f;
      out[3] = held ? 1.0f : 0.0f;
    }
  }
}

__global__ void cross_entropy_shard_combine_kernel(float* losses, float* lse, const float* stats,
                                                   const int32_t* targets, int64_t N, int parts) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x) {
    float m = -INFINITY;
    for (int p = 0; p < parts; ++p) m = fmaxf(m, stats[(p * N + i) * 4]);
    float s = 0.0f, tl = 0.0f, held = 0.0f;
    for (int p = 0; p < parts; ++p) {
      const float* st = stats + (p * N + i) * 4;
      s += st[1] * expf(st[0] - m);
      tl += st[2];
      held += st[3];
    }
    const float l = m + logf(s);
    lse[i] = l;
    losses[i] = targets[i] < 0 ? 0.0f : held == 1.0f ? l - tl : NAN;
  }
}

// One block: deterministic for a given N (fixed per-thread order, fixed reduction tree).
__global__ void cross_entropy_mean_kernel(float* mean, float* inv_count, const float* losses,
                                          const int32_t* targets, int64_t N) {
  TRIDENT_SHARED(double, sh, [32]);
  double total = 0.0, count = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    if (targets[i] < 0) continue;
    total += static_cast<double>(losses[i]);
    count += 1.0;
  }
  total = detail::block_sum(total, sh);
  count = detail::block_sum(count, sh);
  if (threadIdx.x == 0) {
    const double denom = count > 0.0 ? count : 1.0;
    *mean = static_cast<float>(total / denom);
    *inv_count = static_cast<float>(1.0 / denom);
  }
}

constexpr int kFusedThreads = 1024;

__global__ void cross_entropy_dloss_kernel(float* dloss, const int32_t* targets, int64_t N,
                                           double grad_scale) {
  TRIDENT_SHARED(double, sh, [32]);
  double count = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) count += targets[i] >= 0 ? 1.0 : 0.0;
  count = detail::block_sum(count, sh);
  if (threadIdx.x == 0) *dloss = static_cast<float>(grad_scale / (count > 0.0 ? count : 1.0));
}

// One column into a thread's running max m and sum s of exp(x - m) (online softmax).
__device__ __forceinline__ void online_max_sum(float v, float& m, float& s) {
  if (v > m) {
    s = s * expf(m - v) + 1.0f;
    m = v;
  } else {
    s += expf(v - m);
  }
}

// W = Pack<T>::N: rows 16-byte aligned (logits aligned, V % W == 0), the packs of a row are
// aligned; W = 1: element by element.
template <typename T, int W>
__global__ void cross_entropy_fused_kernel(T* logits, float* losses, const float* dloss,
                                           const int32_t* targets, int64_t N, int64_t V,
                                           int64_t vocab, int32_t* bad_position) {
  TRIDENT_SHARED(float, sh, [32]);
  const int64_t vocab_packs = vocab / W, row_packs = V / W;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    T* x = logits + r * V;
    const int32_t t = targets[r];
    const bool valid = t >= 0 && t < vocab;
    // Read before the block's first barrier: after the last one the row is overwritten.
    const float xt = threadIdx.x == 0 && valid ? to_float(x[t]) : 0.0f;
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = threadIdx.x; c < vocab_packs; c += blockDim.x) {
      float f[W];
      load_f<W>(x + c * W, f);
#pragma unroll
      for (int k = 0; k < W; ++k) online_max_sum(f[k], m, s);
    }
    for (int64_t j = vocab_packs * W + threadIdx.x; j < vocab; j += blockDim.x)
      online_max_sum(to_float(x[j]), m, s);
    const float mx = detail::block_max(m, sh);
    const float l = mx + logf(detail::block_sum(m == -INFINITY ? 0.0f : s * expf(m - mx), sh));
    if (threadIdx.x == 0) {
      if (t >= vocab) atomicMin(bad_position, static_cast<int32_t>(min(r, int64_t{kNoBadIndex})));
      losses[r] = valid ? l - xt : 0.0f;
    }
    if (dloss == nullptr) continue;
    const float dl = valid ? *dloss : 0.0f;  // ignored (and invalid) targets: a zero row
    // V is a multiple of W: the whole row in packs, padding columns [vocab, V) zero.
    for (int64_t c = threadIdx.x; c < row_packs; c += blockDim.x) {
      const int64_t j0 = c * W;
      float f[W];
      load_f<W>(x + j0, f);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const int64_t j = j0 + k;
        f[k] = j < vocab ? (expf(f[k] - l) - (j == t ? 1.0f : 0.0f)) * dl : 0.0f;
      }
      store_f<W>(x + j0, f);
    }
  }
}

template <typename T, int W>
__global__ void cross_entropy_fused_rescale_kernel(T* x, const float* factor, int64_t n) {
  const float f = *factor;
  if (f == 1.0f) return;
  detail::flat_packs<W>(n, [&](int64_t i, auto k) {
    constexpr int K = decltype(k)::value;
    float v[K];
    load_f<K>(x + i, v);
#pragma unroll
    for (int e = 0; e < K; ++e) v[e] *= f;
    store_f<K>(x + i, v);
  });
}

unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), int64_t{1} << 20));
}

}  // namespace

void cross_entropy_forward(ScalarType t, float* losses, float* lse, const void* logits,
                           const int32_t* targets, int64_t N, int64_t V, int32_t* bad_position,
                           cudaStream_t stream) {
  detail::check_cuda(cudaMemsetAsync(bad_position, 0x7F, sizeof(int32_t), stream),
                     "cross_entropy_forward");
  if (N <= 0) return;
  if (V <= 0) throw std::invalid_argument("cross_entropy_forward: no classes (V = 0)");
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy", {
    TRIDENT_LAUNCH(cross_entropy_forward_kernel<T>, row_grid(N), kThreads, 0, stream)
    (losses, lse, static_cast<const T*>(logits), targets, N, V, bad_position);
    check_launch("cross_entropy_forward_kernel");
  });
}

void cross_entropy_backward(ScalarType t, void* dlogits, const void* logits, const float* lse,
                            const int32_t* targets, const float* dlosses, int64_t N, int64_t V,
                            int64_t vocab_start, cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy_backward", {
    TRIDENT_LAUNCH(cross_entropy_backward_kernel<T>, row_grid(N), kThreads, 0, stream)
    (static_cast<T*>(dlogits), static_cast<const T*>(logits), lse, targets, dlosses, N, V,
     vocab_start);
    check_launch("cross_entropy_backward_kernel");
  });
}

void cross_entropy_fused(ScalarType t, void* logits, float* losses, float* dloss,
                         const int32_t* targets, int64_t N, int64_t V, int64_t vocab,
                         double grad_scale, int32_t* bad_position, cudaStream_t stream) {
  detail::check_cuda(cudaMemsetAsync(bad_position, 0x7F, sizeof(int32_t), stream),
                     "cross_entropy_fused");
  if (vocab <= 0 || vocab > V) {
    throw std::invalid_argument("cross_entropy_fused: vocabulary of " + std::to_string(vocab) +
                                " for rows of " + std::to_string(V) + " logits");
  }
  if (dloss != nullptr) {
    TRIDENT_LAUNCH(cross_entropy_dloss_kernel, 1, kMeanThreads, 0, stream)
    (dloss, targets, std::max<int64_t>(N, 0), grad_scale);
    check_launch("cross_entropy_dloss_kernel");
  }
  if (N <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy_fused", {
    const int width = detail::vec_width<T>(V, {logits});
    TRIDENT_VEC_DISPATCH(T, width, {
      TRIDENT_LAUNCH((cross_entropy_fused_kernel<T, W>), row_grid(N), kFusedThreads, 0, stream)
      (static_cast<T*>(logits), losses, dloss, targets, N, V, vocab, bad_position);
    });
    check_launch("cross_entropy_fused_kernel");
  });
}

void cross_entropy_fused_rescale(ScalarType t, void* x, const float* factor, int64_t n,
                                 cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy_fused_rescale", {
    // A capped grid: when *factor is 1 (the usual case) every block returns at once.
    const int width = detail::vec_width<T>(0, {x});
    TRIDENT_VEC_DISPATCH(T, width, {
      TRIDENT_LAUNCH((cross_entropy_fused_rescale_kernel<T, W>),
                     detail::grid_for(n / W + 1, kThreads, 1024), kThreads, 0, stream)
      (static_cast<T*>(x), factor, n);
    });
    check_launch("cross_entropy_fused_rescale_kernel");
  });
}

void cross_entropy_shard_stats(ScalarType t, float* stats, const void* logits,
                               const int32_t* targets, int64_t N, int64_t V, int64_t vocab_start,
                               cudaStream_t stream) {
  if (N <= 0) return;
  if (V <= 0) {
    throw std::invalid_argument(
        "cross_entropy_shard_stats: empty vocabulary slice (V = " + std::to_string(V) + ")");
  }
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "cross_entropy_shard_stats", {
    TRIDENT_LAUNCH(cross_entropy_shard_stats_kernel<T>, row_grid(N), kThreads, 0, stream)
    (stats, static_cast<const T*>(logits), targets, N, V, vocab_start);
    check_launch("cross_entropy_shard_stats_kernel");
  });
}

void cross_entropy_shard_combine(float* losses, float* lse, const float* stats,
                                 const int32_t* targets, int64_t N, int parts,
                                 cudaStream_t stream) {
  if (N <= 0) return;
  if (parts <= 0) {
    throw std::invalid_argument(
        "cross_entropy_shard_combine: no slices (parts = " + std::to_string(parts) + ")");
  }
  TRIDENT_LAUNCH(cross_entropy_shard_combine_kernel, detail::grid_for(N, kThreads), kThreads, 0,
                 stream)
  (losses, lse, stats, targets, N, parts);
  check_launch("cross_entropy_shard_combine_kernel");
}

void cross_entropy_mean(float* mean, float* inv_count, const float* losses, const int32_t* targets,
                        int64_t N, cudaStream_t stream) {
  const int64_t rows = std::max<int64_t>(N, 0);
  TRIDENT_LAUNCH(cross_entropy_mean_kernel, 1, kMeanThreads, 0, stream)
  (mean, inv_count, losses, targets, rows);
  check_launch("cross_entropy_mean_kernel");
}

}  // namespace trident::kernels::cuda
