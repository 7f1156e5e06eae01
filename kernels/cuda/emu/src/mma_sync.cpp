// Trident's CUDA emulation: PTX mma.sync m16n8k16 (bf16 -> f32) and ldmatrix (m8n8 b16, x2/x4,
// .trans), include/trident_mma_sync_emu.hpp. Each call stores the calling lane's registers (or
// row address) in the warp's scratch, waits for the whole warp (a warp call of the fiber
// scheduler, launch.cpp), then computes the lane's own results from the gathered registers with
// the PTX ISA's fragment layouts. Two scratch sets per instruction alternate by call, so a lane
// that reaches the next call first does not overwrite what the others still read.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda_bf16.h"
#include "cuda_runtime.h"
#include "emu_runtime.hpp"
#include "trident_mma_sync_emu.hpp"

namespace cuemu::ptx {
namespace {

struct Scratch {
  uint32_t mma_calls[32], ld_calls[32];
  uint32_t a[2][32][4], b[2][32][2];
  float c[2][32][4];
  uintptr_t row[2][32];
};
static_assert(kWarpScratchMmaSyncOffset + sizeof(Scratch) <= kWarpScratchBytes,
              "the PTX scratch does not fit in the warp scratch");

Scratch& scratch() {
  auto* base = static_cast<unsigned char*>(warp_scratch(kWarpScratchBytes));
  return *reinterpret_cast<Scratch*>(base + kWarpScratchMmaSyncOffset);
}

float bf16_half(uint32_t reg, int half) {
  const auto bits = static_cast<unsigned short>(half == 0 ? reg & 0xffffu : reg >> 16);
  return __bfloat162float(__ushort_as_bfloat16(bits));
}

// Element (row, k) of A (16 x 16) and (k, n) of B (16 x 8) from the warp's gathered registers.
float a_at(const uint32_t (&a)[32][4], int row, int k) {
  const int lane = (row % 8) * 4 + (k % 8) / 2;
  const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
  return bf16_half(a[lane][reg], k % 2);
}
float b_at(const uint32_t (&b)[32][2], int k, int n) {
  const int lane = n * 4 + (k % 8) / 2;
  return bf16_half(b[lane][k >= 8 ? 1 : 0], k % 2);
}

}  // namespace

void mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const char* file, int line) {
  Scratch& s = scratch();
  const int lane = thread_rank() % 32;
  const int set = static_cast<int>(s.mma_calls[lane]++ & 1u);
  for (int i = 0; i < 4; ++i) s.a[set][lane][i] = a[i];
  for (int i = 0; i < 2; ++i) s.b[set][lane][i] = b[i];
  for (int i = 0; i < 4; ++i) s.c[set][lane][i] = d[i];
  warp_collective("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", nullptr, 0, -1, file,
                  line);
  Scratch& t = scratch();  // the same storage: every user asks for kWarpScratchBytes
  const int g = lane >> 2, tig = lane & 3;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * tig + (i % 2);
    float acc = t.c[set][lane][i];
    for (int k = 0; k < 16; ++k) acc += a_at(t.a[set], row, k) * b_at(t.b[set], k, col);
    d[i] = acc;
  }
}

void ldmatrix(uint32_t* r, int matrices, bool trans, const void* row, const char* file, int line) {
  const char* name = matrices == 4 ? (trans ? "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"
                                            : "ldmatrix.sync.aligned.m8n8.x4.shared.b16")
                                   : (trans ? "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16"
                                            : "ldmatrix.sync.aligned.m8n8.x2.shared.b16");
  const int lane = thread_rank() % 32;
  if (lane < 8 * matrices) {  // the lanes whose addresses the instruction reads
    std::string why;
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0) {
      why = "is not 16-byte aligned";
    } else if (!is_shared_range(row, 16)) {
      why = "is not 16 bytes of the block's shared memory";
    }
    if (!why.empty()) {
      char ptr[32];
      std::snprintf(ptr, sizeof ptr, "%p", row);
      device_trap((std::string(name) + ": lane " + std::to_string(lane) + "'s row address " + ptr +
                   " " + why)
                      .c_str(),
                  file, line);
    }
  }
  Scratch& s = scratch();
  const int set = static_cast<int>(s.ld_calls[lane]++ & 1u);
  s.row[set][lane] = reinterpret_cast<uintptr_t>(row);
  warp_collective(name, nullptr, 0, -1, file, line);
  const Scratch& t = scratch();
  for (int j = 0; j < matrices; ++j) {
    uint32_t reg = 0;
    for (int h = 0; h < 2; ++h) {
      // Element (mr, mc) of matrix j: row mr's address is lane 8j + mr's.
      const int mr = trans ? 2 * (lane % 4) + h : lane / 4;
      const int mc = trans ? lane / 4 : 2 * (lane % 4) + h;
      unsigned short bits;
      std::memcpy(&bits, reinterpret_cast<const unsigned char*>(t.row[set][8 * j + mr]) + 2 * mc,
                  sizeof bits);
      reg |= static_cast<uint32_t>(bits) << (16 * h);
    }
    r[j] = reg;
  }
}

}  // namespace cuemu::ptx
