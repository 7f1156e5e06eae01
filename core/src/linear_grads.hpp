// Internal to core/src: the parameter gradients of Linear layers, shared by ops_nn.cpp (linear,
// linear_gelu) and ops_mlp.cpp (mlp_gelu).
#pragma once
#include <cstddef>
#include <cstdint>

#include "trident/core/tensor.hpp"

namespace trident::ops::detail {

// True for a mixed-precision Linear layer: a bf16 input with an f32 (master) weight.
inline bool is_mixed(const Tensor& x, const Tensor& weight) {
  return x.dtype() == DType::BF16 && weight.dtype() == DType::F32;
}

// A parameter as the GEMM reads it: its bf16 copy when mixed (no autograd: the op's own
// backward returns the f32 gradient; the current WorkingCopies' copy when it keeps one, else a
// cast), itself (contiguous) otherwise.
Tensor gemm_operand(const Tensor& param, DType dtype);

struct ParamGrads {
  Tensor dw, db;  // undefined where the gradient went into the leaf's own in place
};

// Only inside a backward that autograd::run_backward runs: the f32 gradients of the f32
// weight (N, K) and bias (N) (when has_bias) of a Linear layer, inputs w_input and b_input of
// the running node, from dy (R, N) and x (R, K) in bf16 (or f32), computed in f32. A leaf's
// existing f32 gradient (a data-parallel bucket view, an earlier micro-batch's) receives its
// contribution in place, with the matmul's beta = 1 (autograd::leaf_input_grad), and its entry
// comes back undefined; otherwise a fresh gradient comes back.
ParamGrads f32_param_grads(const Tensor& dy, const Tensor& x, bool has_bias, size_t w_input,
                           size_t b_input, int64_t R, int64_t N, int64_t K);

}  // namespace trident::ops::detail
