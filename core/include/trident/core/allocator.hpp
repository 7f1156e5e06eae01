// Per-device caching allocators. Freed blocks go back to a size-keyed free list and are
// reused by later requests of a similar size, so a training loop stops calling the system
// allocator (malloc or cudaMalloc) after its first step. Statistics report the bytes in use,
// their peak and the bytes held in the cache.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "trident/core/device.hpp"

namespace trident {

struct AllocatorStats {
  size_t in_use_bytes = 0;    // handed out and not yet freed
  size_t peak_bytes = 0;      // maximum of in_use_bytes since the last reset
  size_t reserved_bytes = 0;  // held from the system (in use + cached)
  uint64_t system_allocs = 0; // calls that reached the system allocator
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns cached blocks to the system.
  virtual void release_cache() = 0;
};

// Caching logic shared by all devices; `raw_alloc`/`raw_free` reach the system.
class CachingAllocator : public Allocator {
 public:
  ~CachingAllocator() override;
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void release_cache() override;

  // Requests are rounded up to this granularity (and to powers of two above 1 MiB / 8).
  static size_t round_size(size_t bytes);

 protected:
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* ptr) = 0;
  // Derived destructors must call this while their raw_free is still callable.
  void release_all();

 private:
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;  // block size -> block
  std::map<void*, size_t> oversized_;          // reused blocks larger than round_size(request)
  AllocatorStats stats_;
};

class CpuAllocator final : public CachingAllocator {
 public:
  ~CpuAllocator() override;

 protected:
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* ptr) override;
};

// The allocator of a device. CUDA devices are served once a CUDA backend is registered.
Allocator& allocator_for(Device device);
// Used by the CUDA backend to install its allocator factory.
void register_device_allocator(DeviceType type, Allocator& (*get)(int index));

}  // namespace trident
