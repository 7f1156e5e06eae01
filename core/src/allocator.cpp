#include "trident/core/allocator.hpp"

#include <cstdlib>
#include <new>

#include "trident/core/error.hpp"

namespace trident {

namespace {
constexpr size_t kAlignment = 64;
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeThreshold = size_t(1) << 20;
// A cached block is reused for a request at least half its size, so waste stays below 2x.
constexpr size_t kMaxWasteFactor = 2;

Allocator& (*g_cuda_allocator)(int) = nullptr;
}  // namespace

#ifdef TRIDENT_WITH_CUDA
void register_cuda_backend();  // backend_cuda.cpp
#endif

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < kLargeThreshold) return (bytes + kSmallGranule - 1) / kSmallGranule * kSmallGranule;
  // Above 1 MiB: round to 1/8 of the next power of two, which bounds waste at 12.5%.
  size_t p = kLargeThreshold;
  while (p < bytes) p <<= 1;
  const size_t step = p / 8;
  return (bytes + step - 1) / step * step;
}

CachingAllocator::~CachingAllocator() = default;

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = free_blocks_.lower_bound(size);
  void* ptr = nullptr;
  size_t block = size;
  if (it != free_blocks_.end() && it->first <= size * kMaxWasteFactor) {
    block = it->first;
    ptr = it->second;
    free_blocks_.erase(it);
  } else {
    ptr = raw_alloc(size);
    if (ptr == nullptr) {
      // Give the cache back and try once more before failing.
      for (auto& [sz, p] : free_blocks_) {
        raw_free(p);
        stats_.reserved_bytes -= sz;
      }
      free_blocks_.clear();
      ptr = raw_alloc(size);
    }
    if (ptr == nullptr) {
      throw Error(str_cat("out of memory: could not allocate ", size, " bytes (",
                          stats_.in_use_bytes, " bytes in use)"));
    }
    stats_.reserved_bytes += size;
    stats_.system_allocs++;
  }
  stats_.in_use_bytes += block;
  if (stats_.in_use_bytes > stats_.peak_bytes) stats_.peak_bytes = stats_.in_use_bytes;
  // The caller frees with its request size; a reused block may be larger than that rounds
  // to, so its true size is kept aside.
  if (block != size) oversized_[ptr] = block;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  size_t block = round_size(bytes);
  auto it = oversized_.find(ptr);
  if (it != oversized_.end()) {
    block = it->second;
    oversized_.erase(it);
  }
  stats_.in_use_bytes -= block;
  free_blocks_.emplace(block, ptr);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.in_use_bytes;
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [sz, p] : free_blocks_) {
    raw_free(p);
    stats_.reserved_bytes -= sz;
  }
  free_blocks_.clear();
}

void CachingAllocator::release_all() { release_cache(); }

CpuAllocator::~CpuAllocator() { release_all(); }

void* CpuAllocator::raw_alloc(size_t bytes) {
  return std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
}

void CpuAllocator::raw_free(void* ptr) { std::free(ptr); }

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    static CpuAllocator cpu;
    return cpu;
  }
#ifdef TRIDENT_WITH_CUDA
  static const bool registered = (register_cuda_backend(), true);
  (void)registered;
#endif
  TRIDENT_CHECK(g_cuda_allocator != nullptr, "device ", device.str(),
                " requested but this build of Trident has no CUDA backend");
  return g_cuda_allocator(device.index);
}

void register_device_allocator(DeviceType type, Allocator& (*get)(int index)) {
  if (type == DeviceType::CUDA) g_cuda_allocator = get;
}

}  // namespace trident
