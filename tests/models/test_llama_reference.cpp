// The spec: Trident's Llama against PyTorch fixtures (tests/reference/make_llama_fixtures.py):
// float32 here, float64 in the reference; tolerance per element 1e-5 (llama_reference_check.hpp).
#include <catch2/catch.hpp>

#include "llama_reference_check.hpp"

namespace lc = trident::llama_check;
using trident::Device;

TEST_CASE("Llama logits, loss and every gradient match PyTorch (float64) within 1e-5",
          "[models][reference][llama]") {
  lc::check_gradients(Device::cpu(), 1e-5);
}

TEST_CASE("10 AdamW steps of the Llama (clipping, warmup+cosine) match torch.optim.AdamW",
          "[models][reference][optim][llama]") {
  lc::check_adamw(Device::cpu(), 1e-5);
}
