// Device buffers given to MpiCommunicator: staged through pinned host memory, so MPI (which
// here has no CUDA support) moves them, e.g. for several ranks sharing one GPU in tests.
//
// make_device_staging runs on the calling thread when an operation is issued: it classifies
// each buffer with cudaPointerGetAttributes and, when one is device memory, records an event
// on the CUDA backend's compute stream (trident::cuda_compute_stream) so the copies see every
// kernel queued before the call. On the communication thread, copy_in() waits for that event and
// copies the In/InOut buffers to pinned host blocks; the MPI call uses host(i); copy_out()
// copies the Out/InOut blocks back and waits for the copies, so the operation is complete on
// the device when its Work finishes. Host buffers pass through untouched; when every buffer is
// host memory (always, in builds without CUDA) make_device_staging returns null and the
// operation runs exactly as before.
//
// Device buffers are recorded with the device's caching allocator on the copy stream
// (Allocator::record_stream), so a block freed right after the Work finished waits for the
// copies before it is handed out again.
//
// Pinned blocks come from a process-wide HostBlockCache (cudaMallocHost is slow: it maps and
// locks pages), so a bucket all-reduced every step reuses the same block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <vector>

namespace trident::detail {

// A cache of host blocks from an allocate/free pair (pinned memory in CUDA builds; any pair in
// tests). acquire() returns the smallest cached block that holds `bytes`, else a new block of
// `bytes` rounded up to the granularity; release() returns it to the cache, or frees it when
// the cache would then hold more than `max_cached_bytes`. Thread-safe.
class HostBlockCache {
 public:
  using AllocFn = void* (*)(size_t bytes);
  using FreeFn = void (*)(void* ptr);
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  static constexpr size_t kGranularity = size_t{1} << 16;  // 64 KiB

  HostBlockCache(AllocFn alloc, FreeFn free, size_t max_cached_bytes);
  ~HostBlockCache();
  HostBlockCache(const HostBlockCache&) = delete;
  HostBlockCache& operator=(const HostBlockCache&) = delete;

  Block acquire(size_t bytes);
  void release(Block block);
  size_t cached_bytes() const;
  size_t cached_blocks() const;

 private:
  AllocFn alloc_;
  FreeFn free_;
  size_t max_cached_bytes_;
  mutable std::mutex mu_;
  std::vector<Block> free_blocks_;  // sorted by size
  size_t cached_bytes_ = 0;
};

enum class StageDir : uint8_t { In, Out, InOut };

struct StageArg {
  const void* ptr;
  size_t bytes;
  StageDir dir;
};

class DeviceStaging {
 public:
  explicit DeviceStaging(std::initializer_list<StageArg> args);
  ~DeviceStaging();
  DeviceStaging(const DeviceStaging&) = delete;
  DeviceStaging& operator=(const DeviceStaging&) = delete;

  bool any_device() const { return any_device_; }
  // The pointer the MPI call uses for argument i: its pinned copy, or the original host buffer.
  void* host(size_t i) const;
  void copy_in();
  void copy_out();

 private:
  struct Entry {
    const void* ptr;
    size_t bytes;
    StageDir dir;
    int device;  // -1: host memory
    HostBlockCache::Block block;
  };
  std::vector<Entry> entries_;
  bool any_device_ = false;
  int device_ = -1;
  void* ready_event_ = nullptr;  // cudaEvent_t recorded on the compute stream
  void* copy_stream_ = nullptr;  // cudaStream_t of the copies
};

// True when `p` is CUDA device memory (false for host, pinned host and managed memory, and
// always in builds without CUDA). Checks only once the CUDA driver is loaded in the process,
// so a CPU-only run never creates a CUDA context.
bool is_device_pointer(const void* p);

// Null when no argument is device memory.
std::shared_ptr<DeviceStaging> make_device_staging(std::initializer_list<StageArg> args);

}  // namespace trident::detail
