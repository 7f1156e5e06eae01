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
  if (!pending_.empty()) collect_pending(false);
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
      // Wait for the pending blocks, give the cache back and try once more before failing.
      collect_pending(true);
      free_cached_blocks();
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
  // to, so the true size is kept with the block.
  in_use_[static_cast<const char*>(ptr)] = Block{block, {}};
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  size_t block = round_size(bytes);
  std::vector<void*> streams;
  auto it = in_use_.find(static_cast<const char*>(ptr));
  if (it != in_use_.end()) {
    block = it->second.size;
    streams = std::move(it->second.streams);
    in_use_.erase(it);
  }
  stats_.in_use_bytes -= block;
  if (streams.empty()) {
    free_blocks_.emplace(block, ptr);
    return;
  }
  Pending p{ptr, block, {}};
  for (void* stream : streams) {
    void* event = record_event(stream);
    if (event == nullptr) {  // cannot tell when the stream is done with it: never reuse it
      for (void* e : p.events) release_event(e);
      return;
    }
    p.events.push_back(event);
  }
  pending_.push_back(std::move(p));
}

void CachingAllocator::record_stream(const void* ptr, void* stream) {
  if (ptr == nullptr || stream == nullptr) return;
  const char* p = static_cast<const char*>(ptr);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.upper_bound(p);
  if (it == in_use_.begin()) return;
  --it;
  if (p >= it->first + it->second.size) return;  // not inside a block of this allocator
  auto& streams = it->second.streams;
  for (void* s : streams) {
    if (s == stream) return;
  }
  streams.push_back(stream);
}

size_t CachingAllocator::pending_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

void CachingAllocator::collect_pending(bool wait) {
  size_t kept = 0;
  for (Pending& p : pending_) {
    bool done = true;
    for (void* e : p.events) {
      if (wait) {
        wait_event(e);
      } else if (!event_done(e)) {
        done = false;
        break;
      }
    }
    if (!done) {
      if (&pending_[kept] != &p) pending_[kept] = std::move(p);  // never move onto itself
      ++kept;
      continue;
    }
    for (void* e : p.events) release_event(e);
    free_blocks_.emplace(p.size, p.ptr);
  }
  pending_.resize(kept);
}

void CachingAllocator::free_cached_blocks() {
  for (auto& [sz, p] : free_blocks_) {
    raw_free(p);
    stats_.reserved_bytes -= sz;
  }
  free_blocks_.clear();
}

void* CachingAllocator::record_event(void* stream) {
  (void)stream;
  return nullptr;
}
bool CachingAllocator::event_done(void* event) {
  (void)event;
  return true;
}
void CachingAllocator::wait_event(void* event) {
  (void)event;
}
void CachingAllocator::release_event(void* event) {
  (void)event;
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
  if (!pending_.empty()) collect_pending(false);
  free_cached_blocks();
}

void CachingAllocator::release_all() {
  std::lock_guard<std::mutex> lock(mu_);
  collect_pending(true);
  free_cached_blocks();
}

CpuAllocator::~CpuAllocator() {
  release_all();
}

void* CpuAllocator::raw_alloc(size_t bytes) {
  return std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
}

void CpuAllocator::raw_free(void* ptr) {
  std::free(ptr);
}

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
