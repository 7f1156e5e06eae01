// Trident's CUDA emulation: nvcuda::wmma (include/mma.h). A fragment is a 16 x 16 tile split
// over the 32 lanes of a warp, 8 elements each; element i of lane l is tile element
// perm[kind][l * 8 + i] (= row * 16 + col), a random permutation of 0..255 per launch and
// fragment kind. load/store wait for the whole warp (a warp call of the fiber scheduler,
// launch.cpp), then each lane moves its own 8 elements. mma_sync writes each lane's A, B and C
// elements into the warp's scratch tiles (two sets, alternating per call, so a lane that
// reaches the next mma_sync first does not overwrite tiles the others still read), waits for the
// warp, and computes its own 8 elements of D from the full tiles.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "cuda_runtime.h"
#include "emu_runtime.hpp"
#include "mma.h"

namespace cuemu::wmma {
namespace {

constexpr int kTile = 16;
constexpr int kElems = kTile * kTile;
constexpr int kPerLane = kElems / 32;
constexpr int kKinds = 5;

// The element-to-lane permutations of the launch that runs on this (stream worker) thread.
struct Mapping {
  bool built = false;
  unsigned seed = 0;
  uint8_t elem[kKinds][kElems];
};
thread_local Mapping tls_mapping;

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The tile elements (row * 16 + col) that the calling lane holds in a fragment of `kind`.
const uint8_t* lane_elements(Kind kind) {
  Mapping& m = tls_mapping;
  const unsigned seed = launch_seed();
  if (!m.built || m.seed != seed) {
    uint64_t s = 0x5745'4D4D'0000'0000ull ^ seed;  // "WMMA"
    for (int k = 0; k < kKinds; ++k) {
      for (int e = 0; e < kElems; ++e) m.elem[k][e] = static_cast<uint8_t>(e);
      for (int e = kElems - 1; e > 0; --e) {
        std::swap(m.elem[k][e], m.elem[k][splitmix64(s) % static_cast<uint64_t>(e + 1)]);
      }
    }
    m.built = true;
    m.seed = seed;
  }
  return &m.elem[static_cast<int>(kind)][thread_rank() % 32 * kPerLane];
}

// The real API's requirements on a tile in memory (CUDA Programming Guide, wmma): a 256-bit
// aligned pointer, ldm a multiple of 16 bytes.
void check_tile(const char* call, const void* p, unsigned ldm, size_t elem_bytes, const char* file,
                int line) {
  const unsigned multiple = static_cast<unsigned>(16 / elem_bytes);
  std::string why;
  if (p == nullptr) {
    why = " with a null pointer";
  } else if (reinterpret_cast<uintptr_t>(p) % 32 != 0) {
    char ptr[32];
    std::snprintf(ptr, sizeof ptr, "%p", p);
    why = std::string(" with pointer ") + ptr + ", which is not 32-byte (256-bit) aligned";
  } else if (ldm % multiple != 0) {
    why = " with ldm " + std::to_string(ldm) + ", which is not a multiple of " +
          std::to_string(multiple) + " elements (16 bytes)";
  }
  if (!why.empty()) device_trap((call + why).c_str(), file, line);
}

size_t offset(int e, unsigned ldm, bool col_major) {
  const size_t r = static_cast<size_t>(e / kTile), c = static_cast<size_t>(e % kTile);
  return col_major ? c * ldm + r : r * ldm + c;
}

struct MmaScratch {
  uint32_t calls[32];  // mma_sync calls per lane: all equal once a call completes
  float a[2][kElems], b[2][kElems], c[2][kElems];
};

}  // namespace

void load(Kind kind, const __nv_bfloat16* p, unsigned ldm, __nv_bfloat16* x, const char* file,
          int line) {
  check_tile("load_matrix_sync", p, ldm, sizeof(__nv_bfloat16), file, line);
  warp_collective("load_matrix_sync", p, ldm, -1, file, line);
  const bool col_major = kind == Kind::AColMajor || kind == Kind::BColMajor;
  const uint8_t* e = lane_elements(kind);
  for (int i = 0; i < kPerLane; ++i) x[i] = p[offset(e[i], ldm, col_major)];
}

void load(const float* p, unsigned ldm, bool col_major, float* x, const char* file, int line) {
  check_tile("load_matrix_sync", p, ldm, sizeof(float), file, line);
  warp_collective("load_matrix_sync", p, ldm, col_major ? 1 : 0, file, line);
  const uint8_t* e = lane_elements(Kind::Accumulator);
  for (int i = 0; i < kPerLane; ++i) x[i] = p[offset(e[i], ldm, col_major)];
}

void store(float* p, const float* x, unsigned ldm, bool col_major, const char* file, int line) {
  check_tile("store_matrix_sync", p, ldm, sizeof(float), file, line);
  warp_collective("store_matrix_sync", p, ldm, col_major ? 1 : 0, file, line);
  const uint8_t* e = lane_elements(Kind::Accumulator);
  for (int i = 0; i < kPerLane; ++i) p[offset(e[i], ldm, col_major)] = x[i];
}

void mma(float* d, Kind a_kind, const __nv_bfloat16* a, Kind b_kind, const __nv_bfloat16* b,
         const float* c, const char* file, int line) {
  static_assert(sizeof(MmaScratch) <= kWarpScratchMmaSyncOffset, "wmma's scratch overlaps");
  auto* s = static_cast<MmaScratch*>(warp_scratch(kWarpScratchBytes));
  const int lane = thread_rank() % 32;
  const int set = static_cast<int>(s->calls[lane]++ & 1u);
  float* ta = s->a[set];
  float* tb = s->b[set];
  float* tc = s->c[set];
  const uint8_t* ea = lane_elements(a_kind);
  const uint8_t* eb = lane_elements(b_kind);
  const uint8_t* ec = lane_elements(Kind::Accumulator);
  for (int i = 0; i < kPerLane; ++i) {
    ta[ea[i]] = static_cast<float>(a[i]);
    tb[eb[i]] = static_cast<float>(b[i]);
    tc[ec[i]] = c[i];
  }
  warp_collective("mma_sync", nullptr, 0, -1, file, line);
  // d may alias c (or a lane's a/b): the tiles hold copies, so d is written directly.
  for (int i = 0; i < kPerLane; ++i) {
    const int r = ec[i] / kTile, col = ec[i] % kTile;
    float acc = tc[ec[i]];
    for (int k = 0; k < kTile; ++k) acc += ta[r * kTile + k] * tb[k * kTile + col];
    d[i] = acc;
  }
}

}  // namespace cuemu::wmma
