// Element-wise and layout kernels: fill, strided gather, dtype conversion, broadcast binary
// ops, scale and axpy. Strided index spaces are first coalesced on the host exactly as the CPU
// kernels do (size-1 dimensions dropped, neighbours contiguous in every operand merged), so a
// contiguous or row-broadcast operation reaches the GPU as one or two dimensions; the kernel
// then maps each flat output index back to operand offsets with at most 8 divisions.
// Grid-stride loops over int64 indices; fp32 arithmetic. Contiguous binary ops, scale, axpy and
// the f32 <-> bf16 conversions move 16 bytes per access (vec.cuh; conversions 4 elements) when
// every pointer is aligned for it, with a scalar tail; otherwise, and for strided layouts, one
// thread per element.
#include <cuda_bf16.h>

#include <cstring>
#include <stdexcept>

#include "common.cuh"
#include "trident/kernels/cuda/elementwise.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {

size_t scalar_size(ScalarType t) {
  switch (t) {
    case ScalarType::F32:
      return 4;
    case ScalarType::F64:
      return 8;
    case ScalarType::BF16:
      return 2;
    case ScalarType::F16:
      return 2;
    case ScalarType::I32:
      return 4;
    case ScalarType::I64:
      return 8;
    case ScalarType::U8:
      return 1;
  }
  return 0;
}

const char* scalar_name(ScalarType t) {
  switch (t) {
    case ScalarType::F32:
      return "f32";
    case ScalarType::F64:
      return "f64";
    case ScalarType::BF16:
      return "bf16";
    case ScalarType::F16:
      return "f16";
    case ScalarType::I32:
      return "i32";
    case ScalarType::I64:
      return "i64";
    case ScalarType::U8:
      return "u8";
  }
  return "?";
}

namespace {

using detail::check_launch;
using detail::from_float;
using detail::grid_for;
using detail::to_float;

constexpr int kMaxDims = 8;
constexpr int kThreads = 256;

template <int NIn>
struct Layout {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[NIn][kMaxDims];
};

int64_t numel_checked(const char* who, const int64_t* shape, int ndim) {
  if (ndim < 0 || ndim > kMaxDims) {
    throw std::invalid_argument(std::string(who) + ": ndim = " + std::to_string(ndim) +
                                " is outside [0, 8]; reshape to at most 8 dimensions");
  }
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0) {
      throw std::invalid_argument(std::string(who) + ": negative dimension " +
                                  std::to_string(shape[d]));
    }
    n *= shape[d];
  }
  return n;
}

template <int NIn>
Layout<NIn> coalesce(const int64_t* shape, int ndim, const int64_t* const* strides) {
  Layout<NIn> L;
  int n = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      bool mergeable = true;
      for (int j = 0; j < NIn; ++j) mergeable &= L.strides[j][n - 1] == strides[j][d] * shape[d];
      if (mergeable) {
        L.shape[n - 1] *= shape[d];
        for (int j = 0; j < NIn; ++j) L.strides[j][n - 1] = strides[j][d];
        continue;
      }
    }
    L.shape[n] = shape[d];
    for (int j = 0; j < NIn; ++j) L.strides[j][n] = strides[j][d];
    ++n;
  }
  if (n == 0) {
    L.shape[0] = 1;
    for (int j = 0; j < NIn; ++j) L.strides[j][0] = 0;
    n = 1;
  }
  L.ndim = n;
  return L;
}

// Offsets of flat (row-major) index i in each operand.
template <int NIn>
__device__ __forceinline__ void offsets_of(const Layout<NIn>& L, int64_t i, int64_t* off) {
#pragma unroll
  for (int j = 0; j < NIn; ++j) off[j] = 0;
  for (int d = L.ndim - 1; d >= 0; --d) {
    const int64_t q = i / L.shape[d], r = i - q * L.shape[d];
#pragma unroll
    for (int j = 0; j < NIn; ++j) off[j] += r * L.strides[j][d];
    i = q;
  }
}

template <typename T>
__global__ void fill_kernel(T* out, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = value;
  }
}

template <typename E>
__global__ void copy_strided_kernel(E* out, const E* in, Layout<1> L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    offsets_of<1>(L, i, off);
    out[i] = in[off[0]];
  }
}

// The f64/i32 conversions (f32 <-> bf16 go through convert_float_kernel).
template <typename To, typename From>
__device__ __forceinline__ To convert_one(From x) {
  return static_cast<To>(x);
}

template <typename To, typename From>
__global__ void convert_kernel(To* out, const From* in, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = convert_one<To>(in[i]);
  }
}

// f32 <-> bf16 in chunks of W (4: 16 bytes of f32, 8 of bf16).
template <typename To, typename From, int W>
__global__ void convert_float_kernel(To* out, const From* in, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K];
    detail::load_f<K>(in + i, x);
    detail::store_f<K>(out + i, x);
  });
}

__device__ __forceinline__ float apply(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return 0.0f;
}

// Both operands contiguous, in chunks of W.
template <typename T, int W>
__global__ void binary_dense_kernel(BinaryOp op, T* out, const T* a, const T* b, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K], y[K];
    detail::load_f<K>(a + i, x);
    detail::load_f<K>(b + i, y);
#pragma unroll
    for (int k = 0; k < K; ++k) x[k] = apply(op, x[k], y[k]);
    detail::store_f<K>(out + i, x);
  });
}

template <typename T>
__global__ void binary_contiguous_kernel(BinaryOp op, T* out, const T* a, int64_t sa, const T* b,
                                         int64_t sb, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = from_float<T>(apply(op, to_float(a[i * sa]), to_float(b[i * sb])));
  }
}

template <typename T>
__global__ void binary_strided_kernel(BinaryOp op, T* out, const T* a, const T* b, Layout<2> L,
                                      int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    offsets_of<2>(L, i, off);
    out[i] = from_float<T>(apply(op, to_float(a[off[0]]), to_float(b[off[1]])));
  }
}

template <typename T, int W>
__global__ void scale_kernel(T* out, const T* in, float alpha, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float x[K];
    detail::load_f<K>(in + i, x);
#pragma unroll
    for (int k = 0; k < K; ++k) x[k] *= alpha;
    detail::store_f<K>(out + i, x);
  });
}

template <typename T, int W>
__global__ void axpy_kernel(T* y, const T* x, float alpha, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float a[K], b[K];
    detail::load_f<K>(y + i, a);
    detail::load_f<K>(x + i, b);
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] += alpha * b[k];
    detail::store_f<K>(y + i, a);
  });
}

// y[i] += (To) x[i] in chunks of W (4: 16 bytes of f32, 8 of bf16): x rounded to To first, then
// one add in f32 rounded to To, bitwise convert() then axpy(alpha 1) (bf16 -> f32 is exact).
template <typename To, typename From, int W>
__global__ void accumulate_converted_kernel(To* y, const From* x, int64_t n) {
  detail::flat_packs<W>(n, [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float a[K], b[K];
    detail::load_f<K>(y + i, a);
    detail::load_f<K>(x + i, b);
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] += to_float(from_float<To>(b[k]));
    detail::store_f<K>(y + i, a);
  });
}

// Chunk b of the table (detail::table_entry_of_chunk), f32 -> bf16 4 at a time when both
// pointers are 16-byte aligned (any the caching allocator hands out).
__global__ void convert_table_kernel(const ConvertEntry* table, int count) {
  const int64_t b = blockIdx.x;
  const ConvertEntry e = table[detail::table_entry_of_chunk(table, count, b)];
  const int64_t begin = (b - e.first_chunk) * kConvertChunk;
  const int64_t n = e.n - begin < kConvertChunk ? e.n - begin : kConvertChunk;
  const float* in = e.src + begin;
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(e.dst) + begin;
  if (detail::aligned16(e.src) && detail::aligned_to(e.dst, 8)) {
    for (int64_t i = 4 * int64_t(threadIdx.x); i < n; i += 4 * int64_t(blockDim.x)) {
      if (i + 4 <= n) {
        float x[4];
        detail::load_f<4>(in + i, x);
        detail::store_f<4>(out + i, x);
      } else {
        for (int64_t j = i; j < n; ++j) {
          float x[1];
          detail::load_f<1>(in + j, x);
          detail::store_f<1>(out + j, x);
        }
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      float x[1];
      detail::load_f<1>(in + i, x);
      detail::store_f<1>(out + i, x);
    }
  }
}

template <typename T>
void launch_fill(T* out, T value, int64_t n, cudaStream_t stream) {
  TRIDENT_LAUNCH(fill_kernel<T>, grid_for(n, kThreads), kThreads, 0, stream)(out, value, n);
  check_launch("fill_kernel");
}

template <typename To, typename From>
void launch_convert(void* out, const void* in, int64_t n, cudaStream_t stream) {
  TRIDENT_LAUNCH((convert_kernel<To, From>), grid_for(n, kThreads), kThreads, 0, stream)
  (static_cast<To*>(out), static_cast<const From*>(in), n);
  check_launch("convert_kernel");
}

// f32 <-> bf16, 4 elements per access when both pointers are aligned for it.
template <typename To, typename From>
void launch_convert_float(void* out, const void* in, int64_t n, cudaStream_t stream) {
  constexpr int kW = 4;
  if (detail::aligned_to(out, kW * sizeof(To)) && detail::aligned_to(in, kW * sizeof(From))) {
    TRIDENT_LAUNCH((convert_float_kernel<To, From, kW>), grid_for((n + kW - 1) / kW, kThreads),
                   kThreads, 0, stream)
    (static_cast<To*>(out), static_cast<const From*>(in), n);
  } else {
    TRIDENT_LAUNCH((convert_float_kernel<To, From, 1>), grid_for(n, kThreads), kThreads, 0, stream)
    (static_cast<To*>(out), static_cast<const From*>(in), n);
  }
  check_launch("convert_float_kernel");
}

template <typename To, typename From>
void launch_accumulate_converted(void* y, const void* x, int64_t n, cudaStream_t stream) {
  constexpr int kW = 4;
  if (detail::aligned_to(y, kW * sizeof(To)) && detail::aligned_to(x, kW * sizeof(From))) {
    TRIDENT_LAUNCH((accumulate_converted_kernel<To, From, kW>),
                   grid_for((n + kW - 1) / kW, kThreads), kThreads, 0, stream)
    (static_cast<To*>(y), static_cast<const From*>(x), n);
  } else {
    TRIDENT_LAUNCH((accumulate_converted_kernel<To, From, 1>), grid_for(n, kThreads), kThreads, 0,
                   stream)
    (static_cast<To*>(y), static_cast<const From*>(x), n);
  }
  check_launch("accumulate_converted_kernel");
}

}  // namespace

void fill(ScalarType t, void* out, double value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  switch (t) {
    case ScalarType::F32:
      return launch_fill(static_cast<float*>(out), float(value), n, stream);
    case ScalarType::BF16:
      return launch_fill(static_cast<__nv_bfloat16*>(out), __float2bfloat16_rn(float(value)), n,
                         stream);
    case ScalarType::F64:
      return launch_fill(static_cast<double*>(out), value, n, stream);
    case ScalarType::I32:
      return launch_fill(static_cast<int32_t*>(out), static_cast<int32_t>(value), n, stream);
    case ScalarType::I64:
      return launch_fill(static_cast<int64_t*>(out), static_cast<int64_t>(value), n, stream);
    case ScalarType::U8:
      detail::check_cuda(cudaMemsetAsync(out, static_cast<int>(value), size_t(n), stream),
                         "fill (u8)");
      return;
    default:
      detail::unsupported("fill", t);
  }
}

void copy_strided(ScalarType t, void* out, const void* in, const int64_t* in_strides,
                  const int64_t* shape, int ndim, cudaStream_t stream) {
  const int64_t n = numel_checked("copy_strided", shape, ndim);
  if (n == 0) return;
  const int64_t* strides[1] = {in_strides};
  const Layout<1> L = coalesce<1>(shape, ndim, strides);
  const size_t es = scalar_size(t);
  if (L.ndim == 1 && L.strides[0][0] == 1) {
    detail::check_cuda(cudaMemcpyAsync(out, in, size_t(n) * es, cudaMemcpyDeviceToDevice, stream),
                       "copy_strided (contiguous)");
    return;
  }
  const unsigned grid = grid_for(n, kThreads);
  switch (es) {
    case 1:
      TRIDENT_LAUNCH(copy_strided_kernel<uint8_t>, grid, kThreads, 0, stream)
      (static_cast<uint8_t*>(out), static_cast<const uint8_t*>(in), L, n);
      break;
    case 2:
      TRIDENT_LAUNCH(copy_strided_kernel<uint16_t>, grid, kThreads, 0, stream)
      (static_cast<uint16_t*>(out), static_cast<const uint16_t*>(in), L, n);
      break;
    case 4:
      TRIDENT_LAUNCH(copy_strided_kernel<uint32_t>, grid, kThreads, 0, stream)
      (static_cast<uint32_t*>(out), static_cast<const uint32_t*>(in), L, n);
      break;
    default:
      TRIDENT_LAUNCH(copy_strided_kernel<uint64_t>, grid, kThreads, 0, stream)
      (static_cast<uint64_t*>(out), static_cast<const uint64_t*>(in), L, n);
      break;
  }
  check_launch("copy_strided_kernel");
}

void convert(ScalarType to, void* out, ScalarType from, const void* in, int64_t n,
             cudaStream_t stream) {
  if (n <= 0) return;
  using S = ScalarType;
  if (to == from) {
    detail::check_cuda(
        cudaMemcpyAsync(out, in, size_t(n) * scalar_size(to), cudaMemcpyDeviceToDevice, stream),
        "convert (same type)");
  } else if (to == S::BF16 && from == S::F32) {
    launch_convert_float<__nv_bfloat16, float>(out, in, n, stream);
  } else if (to == S::F32 && from == S::BF16) {
    launch_convert_float<float, __nv_bfloat16>(out, in, n, stream);
  } else if (to == S::F64 && from == S::F32) {
    launch_convert<double, float>(out, in, n, stream);
  } else if (to == S::F32 && from == S::F64) {
    launch_convert<float, double>(out, in, n, stream);
  } else if (to == S::F32 && from == S::I32) {
    launch_convert<float, int32_t>(out, in, n, stream);
  } else {
    throw std::invalid_argument(std::string("cannot convert ") + scalar_name(from) + " to " +
                                scalar_name(to) + " on CUDA");
  }
}

void accumulate_converted(ScalarType to, void* y, ScalarType from, const void* x, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return;
  using S = ScalarType;
  if (to == S::F32 && from == S::BF16) {
    launch_accumulate_converted<float, __nv_bfloat16>(y, x, n, stream);
  } else if (to == S::BF16 && from == S::F32) {
    launch_accumulate_converted<__nv_bfloat16, float>(y, x, n, stream);
  } else if (to == S::F32 && from == S::F32) {
    launch_accumulate_converted<float, float>(y, x, n, stream);
  } else if (to == S::BF16 && from == S::BF16) {
    launch_accumulate_converted<__nv_bfloat16, __nv_bfloat16>(y, x, n, stream);
  } else {
    throw std::invalid_argument(std::string("accumulate_converted: ") + scalar_name(from) +
                                " into " + scalar_name(to) +
                                " is not supported on CUDA (f32 and bf16 only)");
  }
}

void binary_strided(BinaryOp op, ScalarType t, void* out, const void* a, const int64_t* a_strides,
                    const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
                    cudaStream_t stream) {
  const int64_t n = numel_checked("binary_strided", shape, ndim);
  if (n == 0) return;
  const int64_t* strides[2] = {a_strides, b_strides};
  const Layout<2> L = coalesce<2>(shape, ndim, strides);
  const unsigned grid = grid_for(n, kThreads);
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "binary op", {
    if (L.ndim == 1 && L.strides[0][0] == 1 && L.strides[1][0] == 1) {
      TRIDENT_VEC_DISPATCH(T, detail::vec_width<T>(0, {out, a, b}), {
        TRIDENT_LAUNCH((binary_dense_kernel<T, W>), grid_for((n + W - 1) / W, kThreads), kThreads,
                       0, stream)
        (op, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n);
      });
    } else if (L.ndim == 1) {
      TRIDENT_LAUNCH(binary_contiguous_kernel<T>, grid, kThreads, 0, stream)
      (op, static_cast<T*>(out), static_cast<const T*>(a), L.strides[0][0],
       static_cast<const T*>(b), L.strides[1][0], n);
    } else {
      TRIDENT_LAUNCH(binary_strided_kernel<T>, grid, kThreads, 0, stream)
      (op, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), L, n);
    }
    check_launch("binary_strided_kernel");
  });
}

void scale(ScalarType t, void* out, const void* in, float alpha, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "scale", {
    TRIDENT_VEC_DISPATCH(T, detail::vec_width<T>(0, {out, in}), {
      TRIDENT_LAUNCH((scale_kernel<T, W>), grid_for((n + W - 1) / W, kThreads), kThreads, 0, stream)
      (static_cast<T*>(out), static_cast<const T*>(in), alpha, n);
      check_launch("scale_kernel");
    });
  });
}

void axpy(ScalarType t, void* y, const void* x, float alpha, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  TRIDENT_CUDA_FLOAT_DISPATCH(t, "axpy", {
    TRIDENT_VEC_DISPATCH(T, detail::vec_width<T>(0, {y, x}), {
      TRIDENT_LAUNCH((axpy_kernel<T, W>), grid_for((n + W - 1) / W, kThreads), kThreads, 0, stream)
      (static_cast<T*>(y), static_cast<const T*>(x), alpha, n);
      check_launch("axpy_kernel");
    });
  });
}

int64_t convert_table_chunks(ConvertEntry* entries, int count) {
  int64_t chunks = 0;
  for (int i = 0; i < count; ++i) {
    entries[i].first_chunk = chunks;
    chunks += (entries[i].n + kConvertChunk - 1) / kConvertChunk;
  }
  return chunks;
}

void convert_table_upload(ConvertEntry* table, const ConvertEntry* entries, int count,
                          cudaStream_t stream) {
  if (count <= 0) return;
  detail::upload_table(table, entries, sizeof(ConvertEntry) * size_t(count), "convert_table_upload",
                       "the working copies' tensors", stream);
}

void convert_f32_to_bf16_table(const ConvertEntry* table, int count, int64_t chunks,
                               cudaStream_t stream) {
  if (count <= 0 || chunks <= 0) return;
  TRIDENT_LAUNCH(convert_table_kernel, static_cast<unsigned>(chunks), kThreads, 0, stream)
  (table, count);
  check_launch("convert_table_kernel");
}

}  // namespace trident::kernels::cuda
