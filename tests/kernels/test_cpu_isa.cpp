// Run-time CPU dispatch (cpu_isa.hpp): the level follows the CPU and TRIDENT_CPU_ISA, gemm takes
// the packed path exactly when the level allows it, and the AVX2 and AVX-512 packed kernels give
// the same bits (the same product computed in two child processes, one per level).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/cpu_isa.hpp"
#include "trident/kernels/cpu/gemm.hpp"

namespace cpu = trident::kernels::cpu;
using cpu::CpuIsa;
using trident::kernels::test::random_vector;

namespace {

CpuIsa parse_level(const std::string& name) {
  for (CpuIsa isa : {CpuIsa::generic, CpuIsa::avx2, CpuIsa::avx512}) {
    if (name == cpu::cpu_isa_name(isa)) return isa;
  }
  throw std::invalid_argument("not a level: " + name);
}

// Products with edge tiles in both directions, several K blocks and every transpose pair: the
// results of all of them, back to back.
std::vector<float> dispatch_products() {
  std::vector<float> out;
  const int64_t shapes[][3] = {{37, 45, 300}, {150, 70, 513}, {13, 130, 64}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const auto A = random_vector<float>(M * K, 11);
        const auto B = random_vector<float>(K * N, 12);
        auto C = random_vector<float>(M * N, 13);
        cpu::gemm<float>(ta, tb, M, N, K, 0.75f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.5f,
                         C.data(), N);
        out.insert(out.end(), C.begin(), C.end());
      }
    }
  }
  return out;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("cpu_isa is the CPU's level lowered by TRIDENT_CPU_ISA", "[kernels][isa]") {
  const CpuIsa supported = cpu::cpu_isa_supported();
  const char* env = std::getenv("TRIDENT_CPU_ISA");
  const CpuIsa want =
      env == nullptr || *env == '\0' ? supported : std::min(parse_level(env), supported);
  INFO("supported " << cpu::cpu_isa_name(supported) << ", TRIDENT_CPU_ISA "
                    << (env ? env : "(unset)") << ", running "
                    << cpu::cpu_isa_name(cpu::cpu_isa()));
  REQUIRE(cpu::cpu_isa() == want);
  REQUIRE(cpu::gemm_is_packed() == (want >= CpuIsa::avx2));
#if defined(__x86_64__)
  // x86-64 CPUs without AVX2 are rare and none runs CI; the level detection must find it here.
  if (std::getenv("TRIDENT_EXPECT_CPU_ISA") != nullptr) {
    REQUIRE(std::string(cpu::cpu_isa_name(supported)) == std::getenv("TRIDENT_EXPECT_CPU_ISA"));
  }
#endif
}

// Helper of the next case, run in a child process: writes dispatch_products() to the file
// TRIDENT_GEMM_DUMP names. Hidden ([.]): it checks nothing by itself.
TEST_CASE("write the dispatch products to TRIDENT_GEMM_DUMP", "[.isa-dump]") {
  const char* path = std::getenv("TRIDENT_GEMM_DUMP");
  REQUIRE(path != nullptr);
  const auto c = dispatch_products();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data()),
            static_cast<std::streamsize>(c.size() * sizeof(float)));
  REQUIRE(out.good());
}

TEST_CASE("the AVX2 and AVX-512 packed kernels give the same bits", "[kernels][isa]") {
  if (cpu::cpu_isa_supported() < CpuIsa::avx512) {
    WARN("this CPU has no AVX-512: only one packed kernel can run here, nothing to compare");
    return;
  }
  char self[4096] = {};
  REQUIRE(::readlink("/proc/self/exe", self, sizeof(self) - 1) > 0);
  const std::string base =
      std::string(TRIDENT_BINARY_DIR) + "/isa_dump_" + std::to_string(::getpid());
  std::vector<std::vector<char>> dumps;
  for (const char* level : {"avx2", "avx512"}) {
    const std::string file = base + "." + level;
    const std::string cmd = std::string("TRIDENT_CPU_ISA=") + level + " TRIDENT_GEMM_DUMP=" + file +
                            " OMP_NUM_THREADS=2 '" + self + "' '[.isa-dump]' > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    dumps.push_back(read_file(file));
    std::remove(file.c_str());
  }
  const size_t floats = dumps[0].size() / sizeof(float);
  REQUIRE(floats == dispatch_products().size());
  REQUIRE(dumps[1].size() == dumps[0].size());
  size_t differ = 0;
  for (size_t i = 0; i < dumps[0].size(); i += sizeof(float)) {
    differ += std::memcmp(&dumps[0][i], &dumps[1][i], sizeof(float)) != 0;
  }
  INFO(differ << " of " << floats << " floats differ between the AVX2 and AVX-512 kernels");
  REQUIRE(differ == 0);
}
