// Fused ops: several ops of a model written by one kernel, with the values and gradients of the
// unfused sequence (each checked against it in tests/core).
// residual_layer_norm: residual = x + delta, normed = layer_norm(residual), x and delta (..., C).
// Two autograd nodes share the work: "residual_add" on residual (gradient passed to x and delta
// unchanged, as add's) and "residual_layer_norm" on normed (inputs residual, weight, bias), whose
// backward adds its input gradient into the gradient the residual has already received from its
// later consumers (autograd::pending_input_grad), in the kernel that computes it: one read and
// one write of (N, C) where the layer norm's backward and autograd's accumulation took two
// writes and three reads.
#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::ops {

namespace {

void check_operand(const Tensor& t, const Tensor& x, const char* what) {
  TRIDENT_CHECK(t.defined(), "residual_layer_norm: ", what, " is undefined");
  TRIDENT_CHECK(t.device() == x.device(), "residual_layer_norm: ", what, " is on ",
                t.device().str(), ", x on ", x.device().str());
  TRIDENT_CHECK(t.dtype() == x.dtype(), "residual_layer_norm: ", what, " is ",
                dtype_name(t.dtype()), ", x is ", dtype_name(x.dtype()));
}

}  // namespace

ResidualLayerNorm residual_layer_norm(const Tensor& x_in, const Tensor& delta_in,
                                      const Tensor& weight, const Tensor& bias, double eps) {
  TRIDENT_CHECK(x_in.defined() && dtype_is_floating(x_in.dtype()),
                "residual_layer_norm: x must be a defined floating tensor");
  check_operand(delta_in, x_in, "delta");
  check_operand(weight, x_in, "weight");
  check_operand(bias, x_in, "bias");
  TRIDENT_CHECK(x_in.dim() >= 1 && x_in.shape() == delta_in.shape(), "residual_layer_norm: x ",
                x_in.shape_str(), " and delta ", delta_in.shape_str(), " must have one shape");
  const int64_t C = x_in.shape().back();
  TRIDENT_CHECK(weight.dim() == 1 && weight.size(0) == C && bias.dim() == 1 && bias.size(0) == C,
                "residual_layer_norm: weight ", weight.shape_str(), " and bias ", bias.shape_str(),
                " must be (", C, ",) for input ", x_in.shape_str());
  const Tensor x = x_in.contiguous(), delta = delta_in.contiguous();
  const Tensor w = weight.contiguous(), b = bias.contiguous();
  const int64_t N = C > 0 ? x.numel() / C : 0;
  Backend& be = backend_for(x.device());
  ResidualLayerNorm r{Tensor::empty(x.shape(), x.dtype(), x.device()),
                      Tensor::empty(x.shape(), x.dtype(), x.device())};
  // f32 statistics for bf16 rows, as layer_norm's.
  Tensor mean = Tensor::empty({N}, stats_dtype(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({N}, stats_dtype(x.dtype()), x.device());
  if (N > 0) {
    be.residual_layernorm_forward(x.dtype(), r.residual.raw_data(), r.normed.raw_data(),
                                  mean.raw_data(), rstd.raw_data(), x.raw_data(), delta.raw_data(),
                                  w.raw_data(), b.raw_data(), N, C, eps);
  }
  autograd::record(r.residual, "residual_add", {x, delta}, [](const Tensor& g) {
    return std::vector<Tensor>{g, g};
  });
  const Tensor rd = r.residual.detach(), wd = w.detach();
  autograd::record(r.normed, "residual_layer_norm", {r.residual, w, b},
                   [rd, wd, mean, rstd, N, C](const Tensor& g_in) {
                     const Tensor g = g_in.contiguous();
                     Backend& bk = backend_for(g.device());
                     Tensor dw = Tensor::empty({C}, g.dtype(), g.device());
                     Tensor db = Tensor::empty({C}, g.dtype(), g.device());
                     Tensor dres = autograd::pending_input_grad(0);
                     const bool in_place =
                         dres.defined() && dres.is_contiguous() && dres.dtype() == g.dtype() &&
                         dres.device() == g.device() && dres.shape() == rd.shape();
                     Tensor dx = in_place ? dres : Tensor::empty(rd.shape(), g.dtype(), g.device());
                     bk.residual_layernorm_backward(
                         g.dtype(), dx.raw_data(), dw.raw_data(), db.raw_data(),
                         in_place ? dres.raw_data() : nullptr, g.raw_data(), rd.raw_data(),
                         wd.raw_data(), mean.raw_data(), rstd.raw_data(), N, C);
                     // In place: the residual's gradient already holds the sum; nothing more to
                     // add.
                     return std::vector<Tensor>{in_place ? Tensor() : dx, dw, db};
                   });
  return r;
}

}  // namespace trident::ops
