// Device memory of one GPU through the caching allocator (allocator.hpp): cudaMalloc runs
// only when no cached block fits, so a training loop stops calling it after its first step.
// The CUDA backend queues all work of a device on its one compute stream, so a block freed on
// the host and handed out again is only touched by work queued after its last use there. A
// block also used on another stream (the NCCL stream, a staging copy stream) is recorded with
// record_stream(): when freed it waits for a cudaEvent recorded on that stream at free time
// (polled with cudaEventQuery on later allocations) before it is handed out again.
#pragma once
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
};

// The allocator of cuda:index, created on first use after cuda_check_device(index).
Allocator& cuda_allocator(int index);

}  // namespace trident
