// Device memory of one GPU through the caching allocator (allocator.hpp): cudaMalloc runs
// only when no cached block fits, so a training loop stops calling it after its first step.
// All work of a device runs on the CUDA backend's one compute stream, so a block freed on the
// host and handed out again is only touched by work queued after its last use.
#pragma once
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

 private:
  int device_;
};

// The allocator of cuda:index, created on first use after cuda_check_device(index).
Allocator& cuda_allocator(int index);

}  // namespace trident
