// The per-element bf16 checks of layer norm and cross entropy (tests/core/
// bf16_statistics_check.hpp) on the GPU: with the saved mean, rstd and lse in f32, each bf16
// output is f32 math on the bf16 inputs rounded once, as on the CPU.
#include <catch2/catch.hpp>

#include "bf16_statistics_check.hpp"
#include "gpu_test_util.hpp"

namespace trident::gpu_test {

TEST_CASE("bf16 layer norm on CUDA keeps mean and rstd in f32 (per element vs f64)", "[ops]") {
  bf16_statistics::check_layer_norm(gpu());
}

TEST_CASE("bf16 cross entropy on CUDA keeps lse and losses in f32 (per element vs f64)", "[ops]") {
  bf16_statistics::check_cross_entropy_backend(gpu());
  bf16_statistics::check_cross_entropy_op(gpu());
}

}  // namespace trident::gpu_test
