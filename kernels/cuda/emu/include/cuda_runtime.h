// Trident's CUDA emulation, device side: lets kernels/cuda/*.cu compile as C++ and run on the
// CPU. A launch (TRIDENT_LAUNCH in kernels/cuda/common.cuh -> cuemu::launch) is queued on its
// stream; the stream's worker thread runs the grid block by block, and each block's threads as
// fibers that switch only at __syncthreads and warp-level calls. Between two such points the
// threads run one after another in forward, reversed or shuffled order
// (TRIDENT_CUDA_EMU_ORDER), so a kernel whose result depends on that order is caught. A barrier
// or shuffle that not all of its threads reach, a deadlock, a bad launch configuration and
// shared memory read before it is written (it starts as NaN) are reported as errors.
#pragma once
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __constant__ static
#define __CUDACC_EMULATED__ 1

namespace cuemu {

// --- what a running thread sees --------------------------------------------------------------
struct ThreadContext {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
// The calling fiber's coordinates (valid only inside a kernel).
const ThreadContext& this_thread();

// --- synchronisation points (implemented in emu/src/launch.cpp) ------------------------------
void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);
enum class WarpOp : uint8_t { Shfl, ShflXor, ShflUp, ShflDown, Ballot, All, Any };
// Exchanges `bits` (the lane's value) across the lanes in `mask` and returns the lane's result.
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int arg, int width,
                       const char* file, int line);
[[noreturn]] void device_trap(const char* what, const char* file, int line);

// --- shared memory ----------------------------------------------------------------------------
// The block's dynamic shared memory (the launch's smem bytes), NaN-filled at block start.
void* dynamic_shared_bytes();
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_bytes());
}
// The block's copy of a `__shared__` variable declared at file:line (one per block, NaN-filled).
void* static_shared_bytes(const char* file, int line, size_t bytes, size_t align);
template <typename T>
T& static_shared(const char* file, int line) {
  static_assert(std::is_trivially_destructible<T>::value, "shared memory holds plain data");
  return *static_cast<T*>(static_shared_bytes(file, line, sizeof(T), alignof(T)));
}

// --- launch -------------------------------------------------------------------------------------
struct LaunchSite {
  const void* func;
  const char* name;
  const char* file;
  int line;
};
// Checks the configuration (sets the thread's last error and returns false when bad) and queues
// the grid; `body` runs once per thread.
void submit_launch(const LaunchSite& site, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   std::shared_ptr<void> keep_alive, void (*body)(void*), void* arg);

template <typename... P>
struct Launcher {
  void (*fn)(P...);
  LaunchSite site;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P),
                  "kernel launched with the wrong number of arguments");
    static_assert((std::is_trivially_copyable<std::decay_t<P>>::value && ...),
                  "kernel parameters must be trivially copyable");
    struct Call {
      void (*fn)(P...);
      std::tuple<std::decay_t<P>...> args;
    };
    // Arguments are converted to the parameter types and copied at launch, as CUDA does.
    auto call =
        std::make_shared<Call>(Call{fn, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)});
    void* raw = call.get();
    submit_launch(
        site, grid, block, smem, stream, std::move(call),
        [](void* p) {
          auto* c = static_cast<Call*>(p);
          std::apply(c->fn, c->args);  // each thread gets its own copies of the parameters
        },
        raw);
  }
};

template <typename... P>
Launcher<P...> launch(void (*fn)(P...), const char* name, dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream, const char* file, int line) {
  return Launcher<P...>{fn,   LaunchSite{reinterpret_cast<const void*>(fn), name, file, line},
                        grid, block,
                        smem, stream};
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of plain values");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace cuemu

// The typed overloads that the real cuda_runtime.h adds for C++ callers.
template <typename T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return ::cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <typename T>
inline cudaError_t cudaMallocHost(T** ptr, size_t bytes) {
  return ::cudaMallocHost(reinterpret_cast<void**>(ptr), bytes);
}

#define threadIdx (::cuemu::this_thread().thread_idx)
#define blockIdx (::cuemu::this_thread().block_idx)
#define blockDim (::cuemu::this_thread().block_dim)
#define gridDim (::cuemu::this_thread().grid_dim)
#define warpSize 32

#define __syncthreads() ::cuemu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::cuemu::syncwarp(::cuemu::detail_mask(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_sync(mask, v, src, ...)                                                             \
  ::cuemu::shfl(::cuemu::WarpOp::Shfl, mask, v, src, ::cuemu::detail_width(__VA_ARGS__), __FILE__, \
                __LINE__)
#define __shfl_xor_sync(mask, v, m, ...)                                                  \
  ::cuemu::shfl(::cuemu::WarpOp::ShflXor, mask, v, m, ::cuemu::detail_width(__VA_ARGS__), \
                __FILE__, __LINE__)
#define __shfl_up_sync(mask, v, d, ...)                                                            \
  ::cuemu::shfl(::cuemu::WarpOp::ShflUp, mask, v, d, ::cuemu::detail_width(__VA_ARGS__), __FILE__, \
                __LINE__)
#define __shfl_down_sync(mask, v, d, ...)                                                  \
  ::cuemu::shfl(::cuemu::WarpOp::ShflDown, mask, v, d, ::cuemu::detail_width(__VA_ARGS__), \
                __FILE__, __LINE__)
#define __ballot_sync(mask, pred)                                                                  \
  static_cast<unsigned>(::cuemu::warp_exchange(::cuemu::WarpOp::Ballot, mask, (pred) ? 1u : 0u, 0, \
                                               32, __FILE__, __LINE__))
#define __all_sync(mask, pred)                                                                 \
  static_cast<int>(::cuemu::warp_exchange(::cuemu::WarpOp::All, mask, (pred) ? 1u : 0u, 0, 32, \
                                          __FILE__, __LINE__))
#define __any_sync(mask, pred)                                                                 \
  static_cast<int>(::cuemu::warp_exchange(::cuemu::WarpOp::Any, mask, (pred) ? 1u : 0u, 0, 32, \
                                          __FILE__, __LINE__))
#define __trap() ::cuemu::device_trap("__trap()", __FILE__, __LINE__)

namespace cuemu {
inline unsigned detail_mask() {
  return 0xffffffffu;
}
inline unsigned detail_mask(unsigned m) {
  return m;
}
inline int detail_width() {
  return 32;
}
inline int detail_width(int w) {
  return w;
}
template <typename T>
T shfl(WarpOp op, unsigned mask, T v, int arg, int width, const char* file, int line) {
  return from_bits<T>(warp_exchange(op, mask, to_bits(v), arg, width, file, line));
}
}  // namespace cuemu

// --- atomics: device memory may be touched by blocks of other streams at the same time ---------
template <typename T>
inline T atomicAdd(T* address, T value) {
  if constexpr (std::is_integral<T>::value) {
    return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
  } else {
    using U = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
    U* u = reinterpret_cast<U*>(address);
    U expected = __atomic_load_n(u, __ATOMIC_SEQ_CST);
    for (;;) {
      T cur;
      std::memcpy(&cur, &expected, sizeof(T));
      const T next = cur + value;
      U desired;
      std::memcpy(&desired, &next, sizeof(T));
      if (__atomic_compare_exchange_n(u, &expected, desired, false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST))
        return cur;
    }
  }
}
template <typename T>
inline T atomicMin(T* address, T value) {
  T cur = __atomic_load_n(address, __ATOMIC_SEQ_CST);
  while (value < cur && !__atomic_compare_exchange_n(address, &cur, value, false, __ATOMIC_SEQ_CST,
                                                     __ATOMIC_SEQ_CST)) {
  }
  return cur;
}
template <typename T>
inline T atomicMax(T* address, T value) {
  T cur = __atomic_load_n(address, __ATOMIC_SEQ_CST);
  while (value > cur && !__atomic_compare_exchange_n(address, &cur, value, false, __ATOMIC_SEQ_CST,
                                                     __ATOMIC_SEQ_CST)) {
  }
  return cur;
}
template <typename T>
inline T atomicExch(T* address, T value) {
  return __atomic_exchange_n(address, value, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T atomicCAS(T* address, T compare, T value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}

// --- device math that the C library lacks -------------------------------------------------------
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fmaf_rn(float a, float b, float c) {
  return std::fma(a, b, c);
}
inline float __saturatef(float x) {
  return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}
inline int __float_as_int(float x) {
  return cuemu::from_bits<int>(cuemu::to_bits(x));
}
inline unsigned __float_as_uint(float x) {
  return cuemu::from_bits<unsigned>(cuemu::to_bits(x));
}
inline float __int_as_float(int x) {
  return cuemu::from_bits<float>(cuemu::to_bits(x));
}
inline float __uint_as_float(unsigned x) {
  return cuemu::from_bits<float>(cuemu::to_bits(x));
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
// CUDA's integer min/max overloads (device code calls them unqualified).
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a > b ? a : b;
}
inline unsigned min(unsigned a, unsigned b) {
  return a < b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
  return a > b ? a : b;
}
inline long min(long a, long b) {
  return a < b ? a : b;
}
inline long max(long a, long b) {
  return a > b ? a : b;
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline long long max(long long a, long long b) {
  return a > b ? a : b;
}
inline unsigned long min(unsigned long a, unsigned long b) {
  return a < b ? a : b;
}
inline unsigned long max(unsigned long a, unsigned long b) {
  return a > b ? a : b;
}
inline float min(float a, float b) {
  return std::fmin(a, b);
}
inline float max(float a, float b) {
  return std::fmax(a, b);
}
inline double min(double a, double b) {
  return std::fmin(a, b);
}
inline double max(double a, double b) {
  return std::fmax(a, b);
}
