// Per-device caching allocators. Freed blocks go back to a size-keyed free list and are
// reused by later requests of a similar size, so a training loop stops calling the system
// allocator (malloc or cudaMalloc) after its first step. Statistics report the bytes in use,
// their peak and the bytes held in the cache.
//
// Streams (the rule of PyTorch's recordStream). A device's kernels run in order on its one
// compute stream, so a block freed on the host and handed out again is only touched by work
// queued after its last use there. Work on another stream (an NCCL collective, a staging copy)
// is not ordered that way: whoever queues such work on a block calls record_stream(ptr,
// stream). When that block is freed, an event is recorded on each recorded stream and the
// block waits in a pending list; allocate() polls those events (cheap: only pending blocks)
// and hands the block out again only once all of them completed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "trident/core/device.hpp"

namespace trident {

struct AllocatorStats {
  size_t in_use_bytes = 0;     // handed out and not yet freed
  size_t peak_bytes = 0;       // maximum of in_use_bytes since the last reset
  size_t reserved_bytes = 0;   // held from the system (in use + cached)
  uint64_t system_allocs = 0;  // calls that reached the system allocator
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
  // `ptr` (anywhere inside a block this allocator handed out) is used by work queued on
  // `stream` (a cudaStream_t) besides the compute stream: see the header comment. Pointers the
  // allocator did not hand out are ignored; so is every call on an allocator without streams.
  virtual void record_stream(const void* ptr, void* stream) {
    (void)ptr;
    (void)stream;
  }
};

// Caching logic shared by all devices; `raw_alloc`/`raw_free` reach the system.
class CachingAllocator : public Allocator {
 public:
  ~CachingAllocator() override;
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  // Pending blocks (freed, their streams' work not yet complete) stay until they are reusable.
  void release_cache() override;
  void record_stream(const void* ptr, void* stream) override;
  // Freed blocks whose recorded streams had not completed when last polled.
  size_t pending_blocks() const;

  // Requests are rounded up to this granularity (and to powers of two above 1 MiB / 8).
  static size_t round_size(size_t bytes);

 protected:
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* ptr) = 0;
  // Events of the stream rule, called with the allocator's lock held. record_event returns an
  // event recorded on `stream` now, or nullptr when that failed (the block is then never
  // reused: it cannot be known to be free). The defaults serve allocators without streams,
  // which never record one.
  virtual void* record_event(void* stream);
  virtual bool event_done(void* event);  // non-blocking
  virtual void wait_event(void* event);  // blocks until done
  virtual void release_event(void* event);
  // Derived destructors must call this while their raw_free is still callable.
  void release_all();

 private:
  struct Block {
    size_t size = 0;
    std::vector<void*> streams;  // recorded streams besides the compute stream
  };
  struct Pending {
    void* ptr;
    size_t size;
    std::vector<void*> events;  // one per recorded stream, recorded at free time
  };
  // Moves the pending blocks whose events all completed to the free list (all of them, after
  // waiting, when `wait` is set).
  void collect_pending(bool wait);
  void free_cached_blocks();

  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;  // block size -> block
  std::map<const char*, Block> in_use_;       // handed out: start -> size and streams
  std::vector<Pending> pending_;              // freed, waiting for their streams
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
