// CudaAllocator: the caching allocator over cudaMalloc/cudaFree of one device.
#ifdef TRIDENT_WITH_CUDA
#include "trident/core/cuda_allocator.hpp"

#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

#include "trident/core/cuda.hpp"
#include "trident/core/error.hpp"

namespace trident {

namespace {
// Makes `device` current for the scope (restores the previous device).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() {
    int cur = -1;
    cudaGetDevice(&cur);
    if (cur != prev_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
};
}  // namespace

CudaAllocator::~CudaAllocator() {
  release_all();
  for (void* e : spare_events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void* CudaAllocator::record_event(void* stream) {
  DeviceGuard guard(device_);
  cudaEvent_t event = nullptr;
  if (!spare_events_.empty()) {
    event = static_cast<cudaEvent_t>(spare_events_.back());
    spare_events_.pop_back();
  } else if (cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  if (cudaEventRecord(event, static_cast<cudaStream_t>(stream)) != cudaSuccess) {
    (void)cudaGetLastError();
    (void)cudaEventDestroy(event);
    return nullptr;
  }
  return event;
}

bool CudaAllocator::event_done(void* event) {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (e == cudaErrorNotReady) return false;
  // Done, or an error: the stream's work will not touch the block any more.
  if (e != cudaSuccess) (void)cudaGetLastError();
  return true;
}

void CudaAllocator::wait_event(void* event) {
  if (cudaEventSynchronize(static_cast<cudaEvent_t>(event)) != cudaSuccess)
    (void)cudaGetLastError();
}

void CudaAllocator::release_event(void* event) {
  spare_events_.push_back(event);
}

void* CudaAllocator::raw_alloc(size_t bytes) {
  DeviceGuard guard(device_);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return nullptr;
  }
  TRIDENT_CHECK(e == cudaSuccess, "cudaMalloc of ", bytes, " bytes on cuda:", device_,
                " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  return p;
}

void CudaAllocator::raw_free(void* ptr) {
  DeviceGuard guard(device_);
  // At process exit the runtime may already be unloading; the memory goes with the process.
  const cudaError_t e = cudaFree(ptr);
  if (e != cudaSuccess) (void)cudaGetLastError();
}

void* CudaAllocator::allocate(size_t bytes) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (!pool_open_) return CachingAllocator::allocate(bytes);
  const size_t size = round_size(bytes);
  // Exact sizes only: a capture repeats the warm-up's requests, so each size finds as many
  // free blocks as the warm-up left (a larger block taken early could starve a later request).
  auto it = pool_free_.find(size);
  if (it != pool_free_.end()) {
    void* p = it->second;
    pool_free_.erase(it);
    return p;
  }
  void* p = CachingAllocator::allocate(bytes);  // from the cache, else cudaMalloc
  pool_owned_[p] = size;
  return p;
}

void CudaAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(pool_mu_);
  auto it = pool_owned_.find(ptr);
  if (it != pool_owned_.end()) {
    pool_free_.emplace(it->second, ptr);
    return;
  }
  if (pool_open_) {
    // Allocated before the pool opened, freed inside it: work queued (or captured) since may
    // still read it, so the pool keeps it.
    const size_t size = round_size(bytes);
    pool_owned_[ptr] = size;
    pool_free_.emplace(size, ptr);
    return;
  }
  CachingAllocator::deallocate(ptr, bytes);
}

void CudaAllocator::begin_private_pool() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  TRIDENT_CHECK(!pool_open_, "cuda:", device_, ": the private pool is already open");
  pool_open_ = true;
}

void CudaAllocator::end_private_pool() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  pool_open_ = false;
}

void CudaAllocator::release_private_pool() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  TRIDENT_CHECK(!pool_open_, "cuda:", device_, ": release_private_pool while the pool is open");
  for (const auto& [size, p] : pool_free_) CachingAllocator::deallocate(p, size);
  pool_free_.clear();
  pool_owned_.clear();  // blocks still held return to the cache when freed
}

bool CudaAllocator::private_pool_open() const {
  std::lock_guard<std::mutex> lock(pool_mu_);
  return pool_open_;
}

size_t CudaAllocator::private_pool_blocks() const {
  std::lock_guard<std::mutex> lock(pool_mu_);
  return pool_owned_.size();
}

size_t CudaAllocator::private_pool_free_blocks() const {
  std::lock_guard<std::mutex> lock(pool_mu_);
  return pool_free_.size();
}

Allocator& cuda_allocator(int index) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaAllocator>> allocators;
  std::lock_guard<std::mutex> lock(mu);
  if (index >= 0 && static_cast<size_t>(index) < allocators.size() && allocators[index]) {
    return *allocators[index];
  }
  cuda_check_device(index);
  if (allocators.size() <= static_cast<size_t>(index)) allocators.resize(index + 1);
  allocators[index] = std::make_unique<CudaAllocator>(index);
  return *allocators[index];
}

}  // namespace trident
#endif  // TRIDENT_WITH_CUDA
