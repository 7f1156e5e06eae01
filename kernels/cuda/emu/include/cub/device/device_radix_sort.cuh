// Trident's CUDA emulation (test builds only): cub::DeviceRadixSort::SortPairs on the CPU, with
// the real signature and protocol. A first call with d_temp_storage == nullptr only sets
// temp_storage_bytes (proportional to num_items, like the real one); the second queues a stable
// sort of (key, value) pairs by the key bits [begin_bit, end_bit) on the stream and returns.
// Keys are ordered as CUB orders them: unsigned integers by value, signed integers and floats
// by their bits with the sign handled (negative before positive, -0.0 before +0.0). The sort
// reads the inputs when it runs on the stream, leaves them unchanged and overwrites the
// temporary storage, as the real one does.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

// From the emulated runtime (kernels/cuda/emu/src/emu_runtime.hpp, not on the include path).
namespace cuemu {
cudaError_t enqueue(cudaStream_t stream, std::function<void()> op, const char* what);
bool is_device_range(const void* ptr, size_t bytes, int* device);
}  // namespace cuemu

namespace cub {

namespace detail::emu {

// The key's bits as an unsigned integer whose order is the key order CUB sorts by.
template <typename Key>
auto ordered_bits(Key key) {
  static_assert(std::is_arithmetic_v<Key>, "emulated radix sort: arithmetic keys only");
  using Bits = std::conditional_t<
      sizeof(Key) == 1, uint8_t,
      std::conditional_t<sizeof(Key) == 2, uint16_t,
                         std::conditional_t<sizeof(Key) == 4, uint32_t, uint64_t>>>;
  static_assert(sizeof(Bits) == sizeof(Key), "emulated radix sort: unsupported key size");
  Bits bits;
  std::memcpy(&bits, &key, sizeof bits);
  constexpr Bits kSign = Bits(Bits{1} << (sizeof(Bits) * 8 - 1));
  if constexpr (std::is_floating_point_v<Key>) {
    bits = (bits & kSign) != 0 ? Bits(~bits) : Bits(bits ^ kSign);
  } else if constexpr (std::is_signed_v<Key>) {
    bits = Bits(bits ^ kSign);
  }
  return bits;
}

inline bool check_range(const void* ptr, size_t bytes, const char* what) {
  if (bytes == 0 || cuemu::is_device_range(ptr, bytes, nullptr)) return true;
  std::fprintf(stderr,
               "[cuda-emu] cub::DeviceRadixSort::SortPairs: %s [%p, +%zu bytes) is not inside one "
               "live cudaMalloc allocation\n",
               what, ptr, bytes);
  return false;
}

inline bool overlap(const void* a, const void* b, size_t bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return bytes > 0 && x < y + bytes && y < x + bytes;
}

}  // namespace detail::emu

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                               ValueT* d_values_out, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    namespace emu = detail::emu;
    const size_t n = num_items > 0 ? static_cast<size_t>(num_items) : 0;
    // Double buffers for keys and values plus room for digit histograms.
    const size_t needed = n * (sizeof(KeyT) + sizeof(ValueT)) + 4096;
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed) {
      std::fprintf(stderr,
                   "[cuda-emu] cub::DeviceRadixSort::SortPairs: temp_storage_bytes %zu is less "
                   "than the %zu the size query returned for %zu items\n",
                   temp_storage_bytes, needed, n);
      return cudaErrorInvalidValue;
    }
    if (begin_bit < 0 || end_bit > int(sizeof(KeyT) * 8) || begin_bit > end_bit) {
      std::fprintf(stderr,
                   "[cuda-emu] cub::DeviceRadixSort::SortPairs: bits [%d, %d) of a %zu-bit key\n",
                   begin_bit, end_bit, sizeof(KeyT) * 8);
      return cudaErrorInvalidValue;
    }
    const size_t key_bytes = n * sizeof(KeyT), value_bytes = n * sizeof(ValueT);
    if (!emu::check_range(d_temp_storage, needed, "d_temp_storage") ||
        !emu::check_range(d_keys_in, key_bytes, "d_keys_in") ||
        !emu::check_range(d_keys_out, key_bytes, "d_keys_out") ||
        !emu::check_range(d_values_in, value_bytes, "d_values_in") ||
        !emu::check_range(d_values_out, value_bytes, "d_values_out")) {
      return cudaErrorInvalidValue;
    }
    if (emu::overlap(d_keys_in, d_keys_out, key_bytes) ||
        emu::overlap(d_values_in, d_values_out, value_bytes)) {
      std::fprintf(stderr,
                   "[cuda-emu] cub::DeviceRadixSort::SortPairs: input and output ranges overlap "
                   "(the emulation has no in-place DoubleBuffer overload)\n");
      return cudaErrorInvalidValue;
    }
    if (n == 0) return cudaSuccess;
    auto sort = [=] {
      using Bits = decltype(emu::ordered_bits(KeyT{}));
      const int width = end_bit - begin_bit;
      const Bits mask =
          width >= int(sizeof(Bits) * 8) ? Bits(~Bits{0}) : Bits((Bits{1} << width) - 1);
      std::vector<Bits> digits(n);
      for (size_t i = 0; i < n; ++i) {
        digits[i] =
            width == 0 ? Bits{0} : Bits((emu::ordered_bits(d_keys_in[i]) >> begin_bit) & mask);
      }
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return digits[a] < digits[b]; });
      std::memset(d_temp_storage, 0xff, needed);
      for (size_t i = 0; i < n; ++i) {
        d_keys_out[i] = d_keys_in[order[i]];
        d_values_out[i] = d_values_in[order[i]];
      }
    };
    return cuemu::enqueue(stream, sort, "cub::DeviceRadixSort::SortPairs");
  }
};

}  // namespace cub
