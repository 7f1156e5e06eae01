// The spec: Trident's Llama against PyTorch fixtures (tests/reference/make_llama_fixtures.py):
// float32 here, float64 in the reference, per element (reference_check.hpp).
#include <catch2/catch.hpp>

#include "reference_check.hpp"

namespace rc = trident::reference_check;
using trident::Device;

// Measured with TRIDENT_REFERENCE_REPORT=1 at rtol 1e-5, on 1 and 2 threads at every CPU level
// (TRIDENT_CPU_ISA avx512, avx2, generic): logits and gradients need atol_of_max <= 2.9e-7, the
// final weights <= 7.2e-6 (generic; 5.9e-6 with the packed GEMM); loss and norm agree to
// 1.3e-6 relative. Margins of 3.5x, 2.8x and 7x.
const rc::Tolerances kCpu{{1e-5, 1e-6}, {1e-5, 2e-5}, {1e-5, 0}};

TEST_CASE("Llama logits, loss and every gradient match PyTorch (float64)",
          "[models][reference][llama]") {
  rc::check_llama_gradients(Device::cpu(), kCpu);
}

TEST_CASE("10 AdamW steps of the Llama (clipping, warmup+cosine) match torch.optim.AdamW",
          "[models][reference][optim][llama]") {
  rc::check_llama_adamw(Device::cpu(), kCpu);
}
