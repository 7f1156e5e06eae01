#include "trident/models/gpt_stage.hpp"

namespace trident::models {

// Every stage holds at least one block, so at least one parameter.
Device GPTStage::device() const {
  return model_.parameters().front().device();
}

void GPTStage::finish_gradients() {
  Communicator* group = model_.parallel().embedding_group();
  if (group == nullptr) return;
  Tensor w = model_.wte->weight;
  Tensor g = w.grad();
  if (!g.defined()) {  // this stage's share is zero (no backward ran): still take part
    g = Tensor::zeros(w.shape(), w.dtype(), w.device());
    w.set_grad(g);
  }
  TRIDENT_CHECK(g.is_contiguous(), "GPTStage: wte.weight's gradient is not contiguous");
  group->all_reduce(g.raw_data(), static_cast<size_t>(g.numel()), g.dtype(), ReduceOp::Sum);
}

}  // namespace trident::models
