// Entry point of the GPU tests. Only a machine without a GPU skips (exit 77, which ctest's
// SKIP_RETURN_CODE turns into "Skipped"); any other CUDA failure fails, and
// TRIDENT_REQUIRE_GPU=1 makes a skip a failure (gpu_skip.hpp). `--probe-gpu` only runs that
// check (0: a GPU is there). The inputs' seed is fixed and printed (gpu_test_util.hpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstring>

#include "gpu_probe.hpp"
#include "gpu_test_util.hpp"

int main(int argc, char** argv) {
  const int probe = trident::gpu_test::probe_gpu();
  if (probe >= 0) return probe;
  if (argc > 1 && std::strcmp(argv[1], "--probe-gpu") == 0) return 0;
  std::printf("GPU test seed: %llu (set TRIDENT_TEST_SEED to change it)\n",
              static_cast<unsigned long long>(trident::gpu_test::test_seed()));
  return Catch::Session().run(argc, argv);
}
