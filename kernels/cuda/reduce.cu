// Deterministic reductions. Sums: pass 1 runs G = min(ceil(n / 2048), 1024) blocks of 256
// threads (G depends on n only), each thread accumulating a grid-stride slice in double and the
// block combining them with a fixed shuffle tree into partial[block]; pass 2 is one block that
// sums the G partials the same way. Column sums (bias gradients, broadcast backward) of a
// (rows, cols) matrix: pass 1 gives block (x, y) 32 columns and a fixed chunk of rows, 8 threads
// per column striding over the chunk, combined in thread order; pass 2 adds the chunks in order.
// General reduce_sum_to: one warp per output element when the innermost dimension is reduced,
// otherwise one thread per output element walking the reduced index space in order.
#include <cuda_bf16.h>

#include <algorithm>

#include "common.cuh"
#include "trident/kernels/cuda/reduce.hpp"

namespace trident::kernels::cuda {
namespace {

using detail::block_sum;
using detail::check_launch;
using detail::from_float;
using detail::to_float;
using detail::warp_sum;

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;
constexpr int kMultiTensors = 64;  // buffers per sum_squares_multi launch
constexpr int kMultiBlocks = 32;   // blocks per buffer in sum_squares_multi
constexpr int kMaxDims = 8;

int partial_blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>((n + 2047) / 2048, 1), kMaxPartials));
}

template <typename T, bool Squares>
__global__ void partial_sum_kernel(const T* x, int64_t n, double* partial) {
  TRIDENT_SHARED(double, sh, [32]);
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(to_float(x[i]));
    acc += Squares ? v * v : v;
  }
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// out = sum of partial[0..count) (one block); optionally also stored as T into out_t.
template <typename T>
__global__ void final_sum_kernel(const double* partial, int64_t count, double* out, T* out_t) {
  TRIDENT_SHARED(double, sh, [32]);
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) {
    if (out != nullptr) *out = acc;
    if (out_t != nullptr) *out_t = from_float<T>(static_cast<float>(acc));
  }
}

template <typename T>
struct MultiArgs {
  const T* x[kMultiTensors];
  int64_t n[kMultiTensors];
};

template <typename T>
__global__ void multi_sum_squares_kernel(MultiArgs<T> args, double* partial) {
  TRIDENT_SHARED(double, sh, [32]);
  const T* x = args.x[blockIdx.y];
  const int64_t n = args.n[blockIdx.y];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(to_float(x[i]));
    acc += v * v;
  }
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = acc;
}

// Column partial sums: block (32, 8) threads, blockIdx.x -> 32 columns, blockIdx.y -> rows
// [y * rows_per_chunk, ...). Writes partial[y * cols + c] (fp32), or out directly as T when
// there is a single chunk.
template <typename T>
__global__ void column_partial_kernel(const T* in, int64_t rows, int64_t cols,
                                      int64_t rows_per_chunk, float* partial, T* out) {
  TRIDENT_SHARED(float, sh, [8][33]);
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += to_float(in[r * cols + c]);
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) s += sh[k][threadIdx.x];
    if (out != nullptr) {
      out[c] = from_float<T>(s);
    } else {
      partial[blockIdx.y * cols + c] = s;
    }
  }
}

template <typename T>
__global__ void column_final_kernel(const float* partial, int64_t chunks, int64_t cols, T* out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    out[c] = from_float<T>(s);
  }
}

// A reduction split into kept dimensions (indexing the contiguous output) and reduced ones.
struct ReduceLayout {
  int nk = 0, nr = 0;
  int64_t kshape[kMaxDims], kstride[kMaxDims], rshape[kMaxDims], rstride[kMaxDims];
  int64_t n_out = 1, n_red = 1;
};

__device__ __forceinline__ int64_t decompose(int64_t i, int n, const int64_t* shape,
                                             const int64_t* stride) {
  int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    const int64_t q = i / shape[d];
    off += (i - q * shape[d]) * stride[d];
    i = q;
  }
  return off;
}

// Innermost dimension reduced: a warp per output, lanes striding over the reduced elements.
template <typename T>
__global__ void reduce_warp_kernel(const T* in, T* out, ReduceLayout L) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; o < L.n_out;
       o += warps) {
    const int64_t base = decompose(o, L.nk, L.kshape, L.kstride);
    double acc = 0.0;
    for (int64_t r = lane; r < L.n_red; r += 32) {
      acc += static_cast<double>(to_float(in[base + decompose(r, L.nr, L.rshape, L.rstride)]));
    }
    acc = warp_sum(acc);
    if (lane == 0) out[o] = from_float<T>(static_cast<float>(acc));
  }
}

// Innermost dimension kept: a thread per output, reduced elements visited in order.
template <typename T>
__global__ void reduce_thread_kernel(const T* in, T* out, ReduceLayout L) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < L.n_out;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = decompose(o, L.nk, L.kshape, L.kstride);
    double acc = 0.0;
    for (int64_t r = 0; r < L.n_red; ++r) {
      acc += static_cast<double>(to_float(in[base + decompose(r, L.nr, L.rshape, L.rstride)]));
    }
    out[o] = from_float<T>(static_cast<float>(acc));
  }
}

template <typename T>
void launch_sum_rows(T* out, const T* in, int64_t rows, int64_t cols, Scratch& scratch,
                     cudaStream_t stream) {
  // Chunks of at least 64 rows, at most 256 chunks: enough blocks to fill a GPU for bias
  // gradients of (B*T, C) activations.
  const int64_t chunks = std::min<int64_t>(256, std::max<int64_t>(1, (rows + 63) / 64));
  const int64_t per_chunk = (rows + chunks - 1) / chunks;
  const dim3 block(32, 8),
      grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(chunks));
  if (chunks == 1) {
    TRIDENT_LAUNCH(column_partial_kernel<T>, grid, block, 0, stream)
    (in, rows, cols, per_chunk, nullptr, out);
    check_launch("column_partial_kernel");
    return;
  }
  float* partial = scratch.get_as<float>(chunks * cols);
  TRIDENT_LAUNCH(column_partial_kernel<T>, grid, block, 0, stream)
  (in, rows, cols, per_chunk, partial, nullptr);
  check_launch("column_partial_kernel");
  TRIDENT_LAUNCH(column_final_kernel<T>, detail::grid_for(cols, kThreads), kThreads, 0, stream)
  (partial, chunks, cols, out);
  check_launch("column_final_kernel");
}

template <typename T>
void launch_total(const T* x, int64_t n, bool squares, double* out_dev, T* out_t, Scratch& scratch,
                  cudaStream_t stream) {
  const int G = partial_blocks(n);
  double* partial = scratch.get_as<double>(G);
  if (squares) {
    TRIDENT_LAUNCH((partial_sum_kernel<T, true>), G, kThreads, 0, stream)(x, n, partial);
  } else {
    TRIDENT_LAUNCH((partial_sum_kernel<T, false>), G, kThreads, 0, stream)(x, n, partial);
  }
  check_launch("partial_sum_kernel");
  TRIDENT_LAUNCH(final_sum_kernel<T>, 1, kThreads, 0, stream)(partial, G, out_dev, out_t);
  check_launch("final_sum_kernel");
}

}  // namespace

void sum(ScalarType t, const void* x, int64_t n, bool squares, double* out_dev, Scratch& scratch,
         cudaStream_t stream) {
  if (n <= 0) {
    detail::check_cuda(cudaMemsetAsync(out_dev, 0, sizeof(double), stream), "sum (empty)");
    return;
  }
  TRIDENT_CUDA_FLOAT_DISPATCH(
      t, "sum",
      launch_total<T>(static_cast<const T*>(x), n, squares, out_dev, nullptr, scratch, stream));
}

void sum_squares_multi(ScalarType t, const void* const* xs, const int64_t* ns, int count,
                       double* out_dev, Scratch& scratch, cudaStream_t stream) {
  if (count <= 0) {
    detail::check_cuda(cudaMemsetAsync(out_dev, 0, sizeof(double), stream), "sum_squares_multi");
    return;
  }
  double* partial = scratch.get_as<double>(int64_t{count} * kMultiBlocks);
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "sum_squares_multi", {
    for (int base = 0; base < count; base += kMultiTensors) {
      const int k = std::min(kMultiTensors, count - base);
      MultiArgs<T> args{};
      for (int i = 0; i < k; ++i) {
        args.x[i] = static_cast<const T*>(xs[base + i]);
        args.n[i] = ns[base + i];
      }
      TRIDENT_LAUNCH(multi_sum_squares_kernel<T>, dim3(kMultiBlocks, k), kThreads, 0, stream)
      (args, partial + int64_t{base} * kMultiBlocks);
      check_launch("multi_sum_squares_kernel");
    }
    TRIDENT_LAUNCH(final_sum_kernel<T>, 1, kThreads, 0, stream)
    (partial, int64_t{count} * kMultiBlocks, out_dev, nullptr);
    check_launch("final_sum_kernel");
  });
}

void sum_rows(ScalarType t, void* out, const void* in, int64_t rows, int64_t cols, Scratch& scratch,
              cudaStream_t stream) {
  if (cols <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "sum_rows", {
    if (rows <= 0) {
      detail::check_cuda(cudaMemsetAsync(out, 0, size_t(cols) * sizeof(T), stream), "sum_rows");
    } else {
      launch_sum_rows<T>(static_cast<T*>(out), static_cast<const T*>(in), rows, cols, scratch,
                         stream);
    }
  });
}

void reduce_sum_to(ScalarType t, void* out, const void* in, const int64_t* shape,
                   const bool* reduce_dim, int ndim, Scratch& scratch, cudaStream_t stream) {
  if (ndim < 0 || ndim > kMaxDims) {
    throw std::invalid_argument("reduce_sum_to: ndim = " + std::to_string(ndim) +
                                " is outside [0, 8]");
  }
  int64_t total = 1, n_out = 1;
  for (int d = 0; d < ndim; ++d) {
    total *= shape[d];
    n_out *= reduce_dim[d] ? 1 : shape[d];
  }
  if (n_out == 0) return;
  const size_t es = scalar_size(t);
  if (total == 0) {
    detail::check_cuda(cudaMemsetAsync(out, 0, size_t(n_out) * es, stream), "reduce_sum_to");
    return;
  }
  // Coalesce: drop size-1 dimensions, merge neighbours with the same flag.
  int64_t cshape[kMaxDims];
  bool cred[kMaxDims];
  int nd = 0;
  bool any_reduced = false;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    any_reduced |= reduce_dim[d];
    if (nd > 0 && cred[nd - 1] == reduce_dim[d]) {
      cshape[nd - 1] *= shape[d];
    } else {
      cshape[nd] = shape[d];
      cred[nd++] = reduce_dim[d];
    }
  }
  if (!any_reduced) {
    detail::check_cuda(
        cudaMemcpyAsync(out, in, size_t(total) * es, cudaMemcpyDeviceToDevice, stream),
        "reduce_sum_to (copy)");
    return;
  }
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "reduce_sum_to", {
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    if (nd == 1) {
      launch_total<T>(x, total, false, nullptr, y, scratch, stream);
    } else if (nd == 2 && cred[0]) {
      launch_sum_rows<T>(y, x, cshape[0], cshape[1], scratch, stream);
    } else {
      ReduceLayout L;
      int64_t stride = 1;
      int64_t in_stride[kMaxDims];
      for (int d = nd - 1; d >= 0; --d) {
        in_stride[d] = stride;
        stride *= cshape[d];
      }
      for (int d = 0; d < nd; ++d) {
        if (cred[d]) {
          L.rshape[L.nr] = cshape[d];
          L.rstride[L.nr++] = in_stride[d];
          L.n_red *= cshape[d];
        } else {
          L.kshape[L.nk] = cshape[d];
          L.kstride[L.nk++] = in_stride[d];
          L.n_out *= cshape[d];
        }
      }
      if (cred[nd - 1]) {
        const unsigned grid = detail::grid_for(L.n_out, kThreads / 32, int64_t{1} << 16);
        TRIDENT_LAUNCH(reduce_warp_kernel<T>, grid, kThreads, 0, stream)(x, y, L);
        check_launch("reduce_warp_kernel");
      } else {
        TRIDENT_LAUNCH(reduce_thread_kernel<T>, detail::grid_for(L.n_out, kThreads), kThreads, 0,
                       stream)
        (x, y, L);
        check_launch("reduce_thread_kernel");
      }
    }
  });
}

}  // namespace trident::kernels::cuda
