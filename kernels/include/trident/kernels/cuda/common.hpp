// Shared vocabulary of the CUDA launchers: element types, and the rule that every launcher
// takes raw device pointers and a stream, queues its work asynchronously and throws
// std::invalid_argument (bad sizes or types) or std::runtime_error (a failed launch, naming the
// kernel and the CUDA error). Storage may be f32 or bf16; arithmetic and accumulation are fp32
// (reductions that return a number accumulate in double). Kernels never include core.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace trident::kernels::cuda {

// Mirrors trident::DType without depending on core.
enum class ScalarType : uint8_t { F32, F64, BF16, F16, I32, I64, U8 };

// Launchers that validate indices on the device (token ids, targets) record the smallest bad
// position in a device int32 that they first set to kNoBadIndex; the caller reads it back.
inline constexpr int32_t kNoBadIndex = 0x7F7F7F7F;

size_t scalar_size(ScalarType t);
const char* scalar_name(ScalarType t);

// Device scratch memory for one launcher call (partial sums, sort buffers), handed out by the
// caller; it stays valid for work queued on the call's stream until the caller reuses it.
class Scratch {
 public:
  virtual ~Scratch() = default;
  virtual void* get(size_t bytes) = 0;
  template <typename T>
  T* get_as(int64_t count) {
    return static_cast<T*>(get(static_cast<size_t>(count) * sizeof(T)));
  }
};

}  // namespace trident::kernels::cuda
