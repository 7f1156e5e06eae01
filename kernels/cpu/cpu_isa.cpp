// CPU instruction-set detection for the kernels' run-time dispatch (see cpu_isa.hpp).
#include "trident/kernels/cpu/cpu_isa.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace trident::kernels::cpu {

CpuIsa cpu_isa_supported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  if (avx512) return CpuIsa::avx512;
  if (avx2) return CpuIsa::avx2;
#endif
  return CpuIsa::generic;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512:
      return "avx512";
    case CpuIsa::avx2:
      return "avx2";
    case CpuIsa::generic:
      break;
  }
  return "generic";
}

namespace {

CpuIsa decide() {
  const CpuIsa supported = cpu_isa_supported();
  const char* env = std::getenv("TRIDENT_CPU_ISA");
  if (env == nullptr || *env == '\0') return supported;
  const std::string want(env);
  for (CpuIsa isa : {CpuIsa::generic, CpuIsa::avx2, CpuIsa::avx512}) {
    if (want == cpu_isa_name(isa)) return std::min(isa, supported);
  }
  throw std::invalid_argument("TRIDENT_CPU_ISA=" + want +
                              ": expected generic, avx2 or avx512 (or unset for the CPU's best)");
}

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa level = decide();
  return level;
}

}  // namespace trident::kernels::cpu
