// The whole Llama on the GPU: the PyTorch reference fixtures of
// tests/models/test_llama_reference.cpp (logits, loss, every gradient, 10 AdamW steps) on cuda.
// Tolerance 1e-4 per element (|a - b| <= 1e-4 max|b| + 1e-4 |b|, llama_reference_check.hpp), as
// the GPT's cuda reference: the GPU sums in other orders (cuBLASLt, block reductions), and the
// AdamW run amplifies that as it does float32 vs float64 in torch.
#include <catch2/catch.hpp>

#include "gpu_test_util.hpp"
#include "llama_reference_check.hpp"

namespace trident::gpu_test {

TEST_CASE("Llama on cuda: loss, logits and every gradient match PyTorch", "[llama_model]") {
  llama_check::check_gradients(gpu(), 1e-4);
}

TEST_CASE("10 AdamW steps of the Llama on cuda match torch.optim.AdamW", "[llama_model]") {
  llama_check::check_adamw(gpu(), 1e-4);
}

}  // namespace trident::gpu_test
