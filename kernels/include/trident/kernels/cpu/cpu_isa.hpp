// Run-time CPU dispatch: which instruction-set level the CPU kernels use in this process.
// A portable build (the default, x86-64 baseline) carries the AVX2+FMA and AVX-512 kernels and
// picks one here, once, from cpuid (__builtin_cpu_supports, which also checks that the OS saves
// the vector registers): a kernel never executes an instruction the CPU lacks.
// The environment variable TRIDENT_CPU_ISA=generic|avx2|avx512 lowers the level (tests run each
// level this machine has); asking for more than the CPU supports gives what it supports.
#pragma once

namespace trident::kernels::cpu {

enum class CpuIsa {
  generic = 0,  // baseline x86-64 (or any non-x86 CPU): Eigen's product, SSE2 in a generic build
  avx2 = 1,     // AVX2 + FMA: packed GEMM with 6 x 16 float tiles in 256-bit registers
  avx512 = 2,   // AVX-512 F/BW/DQ/VL: packed GEMM with 12 x 32 float tiles in 512-bit registers
};

// What this CPU (and OS) supports.
CpuIsa cpu_isa_supported();

// The level the kernels run at: cpu_isa_supported(), lowered by TRIDENT_CPU_ISA. Decided on the
// first call; throws std::invalid_argument when TRIDENT_CPU_ISA names no level.
CpuIsa cpu_isa();

// "generic", "avx2" or "avx512".
const char* cpu_isa_name(CpuIsa isa);

}  // namespace trident::kernels::cpu
