// The skip rule of the GPU test binaries (tests/gpu/gpu_skip.hpp), on any machine: only "no
// GPU here" skips; a runtime error, or a driver that is installed but too old, fails; and
// TRIDENT_REQUIRE_GPU=1 turns a skip into a failure.
#include <catch2/catch.hpp>

#include "gpu_skip.hpp"

using trident::gpu_test::classify_gpu_probe;
using trident::gpu_test::GpuProbe;

TEST_CASE("GPU probe: a device runs the tests") {
  CHECK(classify_gpu_probe(0, "", 1, true, false).kind == GpuProbe::Run);
  CHECK(classify_gpu_probe(0, "", 4, false, true).kind == GpuProbe::Run);
}

TEST_CASE("GPU probe: no device, or no driver installed, skips") {
  const GpuProbe none = classify_gpu_probe(100, "cudaErrorNoDevice", 0, true, false);
  CHECK(none.kind == GpuProbe::Skip);
  CHECK_THAT(none.message, Catch::Contains("no CUDA device") && Catch::Contains("100"));
  CHECK(classify_gpu_probe(35, "cudaErrorInsufficientDriver", 0, false, false).kind ==
        GpuProbe::Skip);
  CHECK(classify_gpu_probe(0, "", 0, true, false).kind == GpuProbe::Skip);
}

TEST_CASE("GPU probe: any other CUDA failure fails, never skips") {
  const GpuProbe old_driver = classify_gpu_probe(35, "cudaErrorInsufficientDriver", 0, true, false);
  CHECK(old_driver.kind == GpuProbe::Fail);
  CHECK_THAT(old_driver.message, Catch::Contains("older than this CUDA runtime"));
  CHECK(classify_gpu_probe(3, "cudaErrorInitializationError", 0, true, false).kind ==
        GpuProbe::Fail);
  CHECK(classify_gpu_probe(999, "cudaErrorUnknown", 0, false, false).kind == GpuProbe::Fail);
}

TEST_CASE("GPU probe: TRIDENT_REQUIRE_GPU=1 makes a skip a failure") {
  const GpuProbe p = classify_gpu_probe(100, "cudaErrorNoDevice", 0, true, true);
  CHECK(p.kind == GpuProbe::Fail);
  CHECK_THAT(p.message, Catch::Contains("TRIDENT_REQUIRE_GPU=1"));
  CHECK(classify_gpu_probe(35, "cudaErrorInsufficientDriver", 0, false, true).kind ==
        GpuProbe::Fail);
}
