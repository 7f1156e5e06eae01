// The transformer MLP as one op, and the f32 parameter gradients of mixed-precision Linear
// layers (linear_grads.hpp).
// mlp_gelu: x (R, C) -> pre = x W_fc^T + b_fc (R, H), act = gelu(pre), y = act W_proj^T (+ b_proj)
// (R, N); saves x, pre and act (bf16 in mixed precision). Backward: the proj's input gradient
// through the GELU in one matmul, dpre = (dy W_proj) * gelu'(pre) (cuBLASLt's DGELU epilogue
// reading the pre-activation the forward's GELU_AUX_BIAS epilogue wrote), then the fc's weight
// gradient with its bias gradient in the same matmul (BGRAD epilogue), and dx = dpre W_fc.
// Mixed precision (bf16 x, f32 weights and biases): every weight and bias gradient is written
// in f32 by its matmul, added in place into the leaf's gradient when it has one.
#include "linear_grads.hpp"
#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/working_copies.hpp"

namespace trident::ops {

namespace detail {

Tensor gemm_operand(const Tensor& param, DType dtype) {
  const Tensor p = param.detach();
  if (p.dtype() == dtype) return p.contiguous();
  const Tensor kept = WorkingCopies::find(p, dtype);  // the step's copy, cast once per step
  return kept.defined() ? kept : p.to(dtype);
}

namespace {
// The leaf's gradient when the backward may add into it in place: f32, contiguous, of the
// parameter's shape, on dy's device.
bool accumulates_into(const Tensor& grad, const Shape& shape, Device device) {
  return grad.defined() && grad.dtype() == DType::F32 && grad.is_contiguous() &&
         grad.shape() == shape && grad.device() == device;
}
}  // namespace

ParamGrads f32_param_grads(const Tensor& dy, const Tensor& x, bool has_bias, size_t w_input,
                           size_t b_input, int64_t R, int64_t N, int64_t K) {
  const Device dev = dy.device();
  const Tensor w_grad = autograd::leaf_input_grad(w_input);
  const bool acc_w = accumulates_into(w_grad, {N, K}, dev);
  Tensor dw = acc_w ? w_grad : Tensor::empty({N, K}, DType::F32, dev);
  Tensor db;
  bool acc_b = false;
  if (has_bias) {
    const Tensor b_grad = autograd::leaf_input_grad(b_input);
    acc_b = accumulates_into(b_grad, {N}, dev);
    db = acc_b ? b_grad : Tensor::empty({N}, DType::F32, dev);
  }
  backend_for(dev).linear_weight_grad_f32(dy.dtype(), dw.data<float>(),
                                          has_bias ? db.data<float>() : nullptr, dy.raw_data(),
                                          x.raw_data(), R, N, K, acc_w, acc_b);
  return {acc_w ? Tensor() : dw, acc_b ? Tensor() : db};
}

}  // namespace detail

namespace {

void check_mlp_param(const Tensor& x, const Tensor& p, bool mixed, const char* what) {
  TRIDENT_CHECK(p.defined(), "mlp_gelu: ", what, " is undefined");
  TRIDENT_CHECK(p.device() == x.device(), "mlp_gelu: ", what, " is on ", p.device().str(),
                ", x on ", x.device().str());
  const DType want = mixed ? DType::F32 : x.dtype();
  TRIDENT_CHECK(p.dtype() == want, "mlp_gelu: ", what, " is ", dtype_name(p.dtype()), ", expected ",
                dtype_name(want), " for a ", dtype_name(x.dtype()), " input and ",
                mixed ? "f32" : "matching", " weights");
}

// Parameter gradients of one Linear inside the node: f32 (in place where possible) when mixed,
// else in the operands' dtype through linear_weight_grad.
detail::ParamGrads param_grads(const Tensor& dy, const Tensor& x, bool mixed, bool has_bias,
                               size_t w_input, size_t b_input, int64_t R, int64_t N, int64_t K) {
  if (mixed) return detail::f32_param_grads(dy, x, has_bias, w_input, b_input, R, N, K);
  detail::ParamGrads p;
  p.dw = Tensor::empty({N, K}, dy.dtype(), dy.device());
  if (has_bias) p.db = Tensor::empty({N}, dy.dtype(), dy.device());
  backend_for(dy.device())
      .linear_weight_grad(dy.dtype(), p.dw.raw_data(), has_bias ? p.db.raw_data() : nullptr,
                          dy.raw_data(), x.raw_data(), R, N, K);
  return p;
}

}  // namespace

Tensor mlp_gelu(const Tensor& x_in, const Tensor& w_fc, const Tensor& b_fc, const Tensor& w_proj,
                const Tensor& b_proj) {
  TRIDENT_CHECK(x_in.defined() && (x_in.dtype() == DType::F32 || x_in.dtype() == DType::BF16 ||
                                   x_in.dtype() == DType::F64),
                "mlp_gelu: x must be f32, bf16 or f64");
  TRIDENT_CHECK(w_fc.defined(), "mlp_gelu: w_fc is undefined");
  const bool mixed = detail::is_mixed(x_in, w_fc);
  check_mlp_param(x_in, w_fc, mixed, "w_fc");
  check_mlp_param(x_in, b_fc, mixed, "b_fc");
  check_mlp_param(x_in, w_proj, mixed, "w_proj");
  if (b_proj.defined()) check_mlp_param(x_in, b_proj, mixed, "b_proj");
  const int64_t C = x_in.dim() >= 1 ? x_in.shape().back() : 0;
  TRIDENT_CHECK(C > 0, "mlp_gelu: input ", x_in.shape_str(), " has no features");
  TRIDENT_CHECK(
      w_fc.dim() == 2 && w_fc.size(1) == C && b_fc.dim() == 1 && b_fc.size(0) == w_fc.size(0),
      "mlp_gelu: w_fc ", w_fc.shape_str(), " and b_fc ", b_fc.shape_str(),
      " must be (H, C) and (H) for input ", x_in.shape_str());
  const int64_t H = w_fc.size(0);
  TRIDENT_CHECK(w_proj.dim() == 2 && w_proj.size(1) == H, "mlp_gelu: w_proj ", w_proj.shape_str(),
                " must be (N, ", H, ")");
  const int64_t N = w_proj.size(0);
  TRIDENT_CHECK(!b_proj.defined() || (b_proj.dim() == 1 && b_proj.size(0) == N),
                "mlp_gelu: b_proj ", b_proj.shape_str(), " must be (", N, ")");
  const DType t = x_in.dtype();
  const Tensor x = x_in.contiguous();
  const Tensor wf = detail::gemm_operand(w_fc, t), bf = detail::gemm_operand(b_fc, t);
  const Tensor wp = detail::gemm_operand(w_proj, t);
  const Tensor bp = b_proj.defined() ? detail::gemm_operand(b_proj, t) : Tensor();
  const int64_t R = C > 0 ? x.numel() / C : 0;
  Shape hidden = x.shape(), out_shape = x.shape();
  hidden.back() = H;
  out_shape.back() = N;
  Tensor pre = Tensor::empty(hidden, t, x.device()), act = Tensor::empty(hidden, t, x.device());
  Tensor out = Tensor::empty(out_shape, t, x.device());
  Backend& bk = backend_for(x.device());
  if (R > 0) {
    bk.linear_gelu_forward(t, act.raw_data(), pre.raw_data(), x.raw_data(), wf.raw_data(),
                           bf.raw_data(), R, H, C);
    bk.linear_forward(t, out.raw_data(), act.raw_data(), wp.raw_data(),
                      bp.defined() ? bp.raw_data() : nullptr, R, N, H);
  }
  const Tensor xd = x.detach();
  const bool has_bp = b_proj.defined(), need_dx = x_in.requires_grad();
  autograd::record(out, "mlp_gelu", {x, w_fc, b_fc, w_proj, b_proj},
                   [xd, wf, wp, pre, act, R, C, H, N, mixed, has_bp, need_dx](const Tensor& g_in) {
                     const Tensor g = g_in.contiguous();
                     Backend& b = backend_for(g.device());
                     // proj: dW_proj = dy^T act (and db_proj); dpre = (dy W_proj) * gelu'(pre), one
                     // matmul.
                     detail::ParamGrads proj = param_grads(g, act, mixed, has_bp, 3, 4, R, N, H);
                     Tensor dpre = Tensor::empty(pre.shape(), g.dtype(), g.device());
                     if (R > 0) {
                       b.linear_dgelu_backward(g.dtype(), dpre.raw_data(), g.raw_data(),
                                               wp.raw_data(), pre.raw_data(), R, N, H);
                     }
                     // fc: dW_fc = dpre^T x with db_fc in the same matmul; dx = dpre W_fc.
                     detail::ParamGrads fc = param_grads(dpre, xd, mixed, true, 1, 2, R, H, C);
                     Tensor dx;
                     if (need_dx) {
                       dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
                       b.gemm_batched(g.dtype(), false, false, 1, R, C, H, 1.0, dpre.raw_data(), H,
                                      0, wf.raw_data(), C, 0, 0.0, dx.raw_data(), C, 0);
                     }
                     return std::vector<Tensor>{dx, fc.dw, fc.db, proj.dw, proj.db};
                   });
  return out;
}

}  // namespace trident::ops
