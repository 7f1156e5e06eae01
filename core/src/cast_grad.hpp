// Internal to core/src: the autograd node of a dtype cast, shared by Tensor::to(DType)
// (tensor.cpp) and WorkingCopies::to (working_copies.cpp, whose bf16 copies come from one
// launch per step instead of a cast per parameter).
#pragma once
#include "trident/core/tensor.hpp"

namespace trident::detail {

// Records "to_dtype" for `out`, the cast of `src` (same shape and device, another floating
// dtype). Its backward casts the gradient back to src's dtype; when src is a leaf that already
// holds a contiguous gradient of its dtype, shape and device (an earlier consumer's, a
// micro-batch's, a zeroed data-parallel bucket view), the gradient is converted and added into
// it in one pass (Backend::accumulate_converted, bitwise the cast then the engine's add) and
// the node returns an undefined gradient: one launch where the cast and the add took two.
void record_cast(Tensor& out, const Tensor& src);

}  // namespace trident::detail
