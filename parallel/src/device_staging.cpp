// Device buffers through MPI: pinned host staging (see device_staging.hpp).
#include "device_staging.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "trident/core/error.hpp"

#if defined(TRIDENT_PARALLEL_CUDA)
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#endif

namespace trident {

namespace detail {

// --- HostBlockCache ---------------------------------------------------------------------------

HostBlockCache::HostBlockCache(AllocFn alloc, FreeFn free, size_t max_cached_bytes)
    : alloc_(alloc), free_(free), max_cached_bytes_(max_cached_bytes) {}

HostBlockCache::~HostBlockCache() {
  for (Block& b : free_blocks_) free_(b.ptr);
}

HostBlockCache::Block HostBlockCache::acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::lower_bound(free_blocks_.begin(), free_blocks_.end(), bytes,
                               [](const Block& b, size_t n) { return b.bytes < n; });
    if (it != free_blocks_.end()) {
      const Block b = *it;
      free_blocks_.erase(it);
      cached_bytes_ -= b.bytes;
      return b;
    }
  }
  Block b;
  b.bytes = std::max<size_t>(1, (bytes + kGranularity - 1) / kGranularity) * kGranularity;
  b.ptr = alloc_(b.bytes);
  if (b.ptr == nullptr) throw std::bad_alloc();
  return b;
}

void HostBlockCache::release(Block block) {
  if (block.ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_bytes_ + block.bytes <= max_cached_bytes_) {
      auto it = std::lower_bound(free_blocks_.begin(), free_blocks_.end(), block.bytes,
                                 [](const Block& b, size_t n) { return b.bytes < n; });
      free_blocks_.insert(it, block);
      cached_bytes_ += block.bytes;
      return;
    }
  }
  free_(block.ptr);
}

size_t HostBlockCache::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_bytes_;
}

size_t HostBlockCache::cached_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_blocks_.size();
}

#if defined(TRIDENT_PARALLEL_CUDA)
namespace {

void check_cuda(cudaError_t rc, const char* what) {
  if (rc == cudaSuccess) return;
  throw Error(str_cat("staging a device buffer through host memory: ", what,
                      " failed: ", cudaGetErrorString(rc)));
}

void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  return cudaMallocHost(&p, bytes) == cudaSuccess ? p : nullptr;
}
void pinned_free(void* p) {
  cudaFreeHost(p);
}

// At most 1 GiB of pinned blocks stay cached between operations.
HostBlockCache& pinned_cache() {
  static HostBlockCache cache(pinned_alloc, pinned_free, size_t{1} << 30);
  return cache;
}

// The CUDA emulation has no driver library to look for: its runtime answers directly.
#if defined(TRIDENT_CUDA_EMULATION)
constexpr bool kHasDriverLibrary = false;
#else
constexpr bool kHasDriverLibrary = true;
#endif

// One stream per device for the copies, created on first use.
cudaStream_t copy_stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<size_t>(device) >= streams.size())
    streams.resize(static_cast<size_t>(device) + 1, nullptr);
  cudaStream_t& s = streams[static_cast<size_t>(device)];
  if (s == nullptr)
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}

// Restores the calling thread's current device on scope exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

int device_of(const void* p) {
  if (p == nullptr) return -1;
  // Nothing can have allocated device memory before the driver is loaded; checking earlier
  // would initialise CUDA (and create a context) in CPU-only runs.
  static std::atomic<bool> driver_loaded{!kHasDriverLibrary};
  if (!driver_loaded) {
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (driver == nullptr) return -1;
    dlclose(driver);
    driver_loaded = true;
  }
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // not a CUDA pointer (or no driver): host memory
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice ? attr.device : -1;
}

}  // namespace
#endif

bool is_device_pointer(const void* p) {
#if defined(TRIDENT_PARALLEL_CUDA)
  return device_of(p) >= 0;
#else
  (void)p;
  return false;
#endif
}

// --- DeviceStaging ------------------------------------------------------------------------------

DeviceStaging::DeviceStaging(std::initializer_list<StageArg> args) {
  for (const StageArg& a : args) {
    Entry e{a.ptr, a.bytes, a.dir, -1, {}};
#if defined(TRIDENT_PARALLEL_CUDA)
    e.device = a.bytes > 0 ? device_of(a.ptr) : -1;
    if (e.device >= 0) {
      TRIDENT_CHECK(device_ < 0 || device_ == e.device, "an MPI operation was given buffers on ",
                    "CUDA devices ", device_, " and ", e.device, ": use one device per call");
      device_ = e.device;
      any_device_ = true;
    }
#endif
    entries_.push_back(e);
  }
#if defined(TRIDENT_PARALLEL_CUDA)
  if (!any_device_) return;
  DeviceGuard guard(device_);
  cudaEvent_t ready = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
  ready_event_ = ready;
  check_cuda(cudaEventRecord(ready, static_cast<cudaStream_t>(cuda_compute_stream(device_))),
             "cudaEventRecord");
  copy_stream_ = copy_stream(device_);
  // The copies run on copy_stream_: a buffer freed as soon as the operation's Work finished
  // is not handed out again before the copy stream is done with it.
  Allocator& allocator = allocator_for(Device::cuda(device_));
  for (const Entry& e : entries_) {
    if (e.device >= 0) allocator.record_stream(e.ptr, copy_stream_);
  }
#endif
}

DeviceStaging::~DeviceStaging() {
#if defined(TRIDENT_PARALLEL_CUDA)
  for (Entry& e : entries_) pinned_cache().release(e.block);
  if (ready_event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(ready_event_));
#endif
}

void* DeviceStaging::host(size_t i) const {
  const Entry& e = entries_.at(i);
  return e.device >= 0 ? e.block.ptr : const_cast<void*>(e.ptr);
}

void DeviceStaging::copy_in() {
#if defined(TRIDENT_PARALLEL_CUDA)
  if (!any_device_) return;
  DeviceGuard guard(device_);
  const auto stream = static_cast<cudaStream_t>(copy_stream_);
  check_cuda(cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(ready_event_), 0),
             "cudaStreamWaitEvent");
  for (Entry& e : entries_) {
    if (e.device < 0) continue;
    if (e.block.ptr == nullptr) e.block = pinned_cache().acquire(e.bytes);
    if (e.dir != StageDir::Out)
      check_cuda(cudaMemcpyAsync(e.block.ptr, e.ptr, e.bytes, cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync (device to host)");
  }
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
#endif
}

void DeviceStaging::copy_out() {
#if defined(TRIDENT_PARALLEL_CUDA)
  if (!any_device_) return;
  DeviceGuard guard(device_);
  const auto stream = static_cast<cudaStream_t>(copy_stream_);
  for (Entry& e : entries_) {
    if (e.device < 0 || e.dir == StageDir::In) continue;
    check_cuda(cudaMemcpyAsync(const_cast<void*>(e.ptr), e.block.ptr, e.bytes,
                               cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync (host to device)");
  }
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
#endif
}

std::shared_ptr<DeviceStaging> make_device_staging(std::initializer_list<StageArg> args) {
#if defined(TRIDENT_PARALLEL_CUDA)
  bool any = false;
  for (const StageArg& a : args) any = any || (a.bytes > 0 && is_device_pointer(a.ptr));
  if (any) return std::make_shared<DeviceStaging>(args);
#else
  (void)args;
#endif
  return nullptr;
}

}  // namespace detail
}  // namespace trident
