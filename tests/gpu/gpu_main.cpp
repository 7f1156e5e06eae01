// Entry point of the GPU tests: with no usable CUDA device the run is skipped (exit 77, which
// ctest's SKIP_RETURN_CODE turns into "Skipped"), never reported as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "trident/core/cuda.hpp"

int main(int argc, char** argv) {
  const std::string reason = trident::cuda_unavailable_reason();
  if (!reason.empty()) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
