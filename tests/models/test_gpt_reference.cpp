// The spec: Trident's GPT against PyTorch fixtures (tests/reference/make_gpt_fixtures.py).
#include <catch2/catch.hpp>

#include "gpt_reference_check.hpp"

namespace rc = trident::reference_check;
using trident::Device;

TEST_CASE("GPT loss, logits and every gradient match PyTorch", "[models][reference]") {
  rc::check_gradients(Device::cpu(), 1e-5);
}

TEST_CASE("10 SGD steps (momentum, Nesterov, weight decay) match torch.optim.SGD",
          "[models][reference][optim]") {
  rc::check_training_run("gpt_tiny_sgd.safetensors", false, Device::cpu(), 1e-5);
}

TEST_CASE("10 AdamW steps with clipping and warmup+cosine match torch.optim.AdamW",
          "[models][reference][optim]") {
  rc::check_training_run("gpt_tiny_adamw.safetensors", true, Device::cpu(), 1e-5);
}
