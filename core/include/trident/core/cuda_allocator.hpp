// Device memory of one GPU through the caching allocator (allocator.hpp): cudaMalloc runs
// only when no cached block fits, so a training loop stops calling it after its first step.
// The CUDA backend queues all work of a device on its one compute stream, so a block freed on
// the host and handed out again is only touched by work queued after its last use there. A
// block also used on another stream (the NCCL stream, a staging copy stream) is recorded with
// record_stream(): when freed it waits for a cudaEvent recorded on that stream at free time
// (polled with cudaEventQuery on later allocations) before it is handed out again.
//
// A CUDA graph's private pool (--cuda-graphs): while the pool is open, every block handed out
// comes from the pool (its free blocks first, else a block taken out of the cache for good) and
// every block freed, whoever allocated it, goes back to the pool. Closed, the pool keeps its
// blocks: no allocation outside it gets them, so the addresses a captured graph reads and
// writes stay the graph's for all its replays, and a capture that allocates no more than the
// eager step before it (the warm-up, run with the pool open) never reaches cudaMalloc, which a
// stream capture forbids. Pool blocks ignore record_stream (a graph runs on the compute stream
// only) and count as in use in stats() until release_private_pool().
#pragma once
#include <map>
#include <mutex>
#include <vector>

#include "trident/core/allocator.hpp"

namespace trident {

class CudaAllocator final : public CachingAllocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  ~CudaAllocator() override;
  CudaAllocator(const CudaAllocator&) = delete;
  CudaAllocator& operator=(const CudaAllocator&) = delete;
  int device() const { return device_; }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  // Opens / closes the private pool (see the top of this file); one pool at a time.
  void begin_private_pool();
  void end_private_pool();
  // Once no graph uses the pool: its free blocks go back to the cache, and blocks still held
  // go there when freed. The pool must be closed.
  void release_private_pool();
  bool private_pool_open() const;
  // Blocks the pool owns (free or held) / of those, free in the pool.
  size_t private_pool_blocks() const;
  size_t private_pool_free_blocks() const;

 protected:
  // nullptr when the device is out of memory (the caching allocator then empties its cache
  // and retries once before throwing).
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* ptr) override;
  void* record_event(void* stream) override;
  bool event_done(void* event) override;
  void wait_event(void* event) override;
  void release_event(void* event) override;

 private:
  int device_;
  std::vector<void*> spare_events_;  // cudaEvent_t, reused (under the base's lock)
  // The private pool (under pool_mu_): owned block -> size, its free blocks by size.
  mutable std::mutex pool_mu_;
  bool pool_open_ = false;
  std::map<void*, size_t> pool_owned_;
  std::multimap<size_t, void*> pool_free_;
};

// The allocator of cuda:index, created on first use after cuda_check_device(index).
Allocator& cuda_allocator(int index);

}  // namespace trident
