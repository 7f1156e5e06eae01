// Buffers of any dtype filled from and read back as doubles, for the multi-rank tests.
// bf16/f16 are encoded here independently of the library's conversions (exact for the small
// integers and halves the tests use).
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "trident/core/dtype.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/parallel_context.hpp"

namespace test_util {

using trident::DType;

inline const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> all{DType::F32, DType::F64,  DType::I32, DType::I64,
                                      DType::U8,  DType::BF16, DType::F16};
  return all;
}

inline uint16_t encode_f16(double x) {
  if (x == 0) return 0;
  const uint16_t sign = x < 0 ? 0x8000 : 0;
  int e = 0;
  const double m = std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
  const int biased = e - 1 + 15;
  const auto frac = static_cast<uint16_t>(std::lround((m * 2 - 1) * 1024));
  return static_cast<uint16_t>(sign | (biased << 10) | frac);
}

inline double decode_f16(uint16_t h) {
  const double sign = (h & 0x8000) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

inline void store(DType t, void* buf, size_t i, double v) {
  switch (t) {
    case DType::F32:
      static_cast<float*>(buf)[i] = static_cast<float>(v);
      break;
    case DType::F64:
      static_cast<double*>(buf)[i] = v;
      break;
    case DType::I32:
      static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v);
      break;
    case DType::I64:
      static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v);
      break;
    case DType::U8:
      static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v);
      break;
    case DType::BF16: {
      const float f = static_cast<float>(v);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      static_cast<uint16_t*>(buf)[i] = static_cast<uint16_t>(u >> 16);
      break;
    }
    case DType::F16:
      static_cast<uint16_t*>(buf)[i] = encode_f16(v);
      break;
  }
}

inline double load(DType t, const void* buf, size_t i) {
  switch (t) {
    case DType::F32:
      return static_cast<const float*>(buf)[i];
    case DType::F64:
      return static_cast<const double*>(buf)[i];
    case DType::I32:
      return static_cast<const int32_t*>(buf)[i];
    case DType::I64:
      return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case DType::U8:
      return static_cast<const uint8_t*>(buf)[i];
    case DType::BF16: {
      const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(buf)[i]) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::F16:
      return decode_f16(static_cast<const uint16_t*>(buf)[i]);
  }
  return 0;
}

// A byte buffer holding `count` elements of `t` (never empty, so data() is a real pointer).
struct Buffer {
  DType dtype;
  size_t count;
  std::vector<unsigned char> bytes;
  Buffer(DType t, size_t n)
      : dtype(t), count(n), bytes(std::max<size_t>(1, n * trident::dtype_size(t))) {}
  void* data() { return bytes.data(); }
  void set(size_t i, double v) { store(dtype, bytes.data(), i, v); }
  double get(size_t i) const { return load(dtype, bytes.data(), i); }
};

// The test pattern: small integers, exact in every dtype and in sums over up to 4 ranks.
inline double pattern(int rank, size_t i) {
  return static_cast<double>((static_cast<size_t>(rank) * 7 + i * 3) % 11 + 1);
}

// Tolerance for comparing a reduced value of type t with the exact double.
inline double tolerance(DType t, double expected) {
  switch (t) {
    case DType::F32:
      return 1e-6 * std::fabs(expected);
    case DType::F64:
      return 1e-12 * std::fabs(expected);
    case DType::BF16:
      return 1e-2 * std::fabs(expected);
    case DType::F16:
      return 1e-3 * std::fabs(expected);
    default:
      return 0;
  }
}

inline std::unique_ptr<trident::MpiCommunicator> make_world() {
  auto world = trident::MpiCommunicator::world();
  world->set_timeout(std::chrono::seconds(60));  // a broken test fails well before ctest's limit
  return world;
}

// The world, its process groups for `layout` (60 s collective timeout) and a ParallelContext
// over them; the context and the groups go before the world.
struct MpiJob {
  std::unique_ptr<trident::MpiCommunicator> world;
  std::unique_ptr<trident::ProcessGroups> groups;
  std::unique_ptr<trident::ParallelContext> ctx;
  explicit MpiJob(trident::ParallelLayout layout) : world(make_world()) {
    groups = std::make_unique<trident::ProcessGroups>(
        *world, trident::Topology(world->rank(), world->size(), layout));
    groups->set_timeout(std::chrono::seconds(60));
    ctx = std::make_unique<trident::ParallelContext>(*groups);
  }
  ~MpiJob() {
    ctx.reset();
    groups.reset();
  }
};

}  // namespace test_util
