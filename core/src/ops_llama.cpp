// The ops a Llama-3 model adds to GPT-2's: RMSNorm, rotary position embeddings, SwiGLU's gate
// and the grouped-query attention input. Each checks its inputs, runs its device's backend and
// records its backward; closures capture detached inputs (never the output). Kernels and their
// math: kernels/{cpu,cuda}/{rms_norm,rope,swiglu,gqa_pack}.
#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::ops {

namespace {

Backend& be(const Tensor& t) {
  return backend_for(t.device());
}

// x must be a defined floating tensor; `other` (when given) on its device with its dtype.
void check_operand(const Tensor& x, const char* op, const char* what, const Tensor& other = {},
                   const char* other_what = nullptr) {
  TRIDENT_CHECK(x.defined(), op, ": ", what, " is undefined");
  TRIDENT_CHECK(dtype_is_floating(x.dtype()), op, ": ", what, " must be floating, got ",
                dtype_name(x.dtype()));
  if (!other.defined()) return;
  TRIDENT_CHECK(x.device() == other.device(), op, ": ", what, " on ", x.device().str(), " but ",
                other_what, " on ", other.device().str());
  TRIDENT_CHECK(x.dtype() == other.dtype(), op, ": ", what, " is ", dtype_name(x.dtype()), " but ",
                other_what, " is ", dtype_name(other.dtype()));
}

}  // namespace

Tensor rms_norm(const Tensor& x_in, const Tensor& weight, double eps) {
  check_operand(x_in, "rms_norm", "input");
  check_operand(weight, "rms_norm", "weight", x_in, "input");
  TRIDENT_CHECK(x_in.dim() >= 1, "rms_norm of a 0-d tensor");
  const int64_t C = x_in.shape().back();
  TRIDENT_CHECK(weight.dim() == 1 && weight.size(0) == C, "rms_norm: weight ", weight.shape_str(),
                " must be (", C, ",) for input ", x_in.shape_str());
  const Tensor x = x_in.contiguous(), w = weight.contiguous();
  const int64_t N = C > 0 ? x.numel() / C : 0;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  // f32 for bf16 rows: backward rebuilds x * rstd from it.
  Tensor rstd = Tensor::empty({N}, stats_dtype(x.dtype()), x.device());
  if (out.numel() > 0)
    be(x).rms_norm_forward(x.dtype(), out.raw_data(), rstd.raw_data(), x.raw_data(), w.raw_data(),
                           N, C, eps);
  const Tensor xd = x.detach(), wd = w.detach();
  autograd::record(out, "rms_norm", {x, w}, [xd, wd, rstd, N, C](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
    Tensor dw = Tensor::empty({C}, g.dtype(), g.device());
    if (C > 0)  // N == 0 writes dw = 0
      be(g).rms_norm_backward(g.dtype(), dx.raw_data(), dw.raw_data(), g.raw_data(), xd.raw_data(),
                              wd.raw_data(), rstd.raw_data(), N, C);
    return std::vector<Tensor>{dx, dw};
  });
  return out;
}

Tensor rope(const Tensor& x_in, int64_t n_head, double theta, int64_t position_offset) {
  check_operand(x_in, "rope", "input");
  TRIDENT_CHECK(x_in.dim() == 3, "rope: input must be (B, T, n_head * D), got ", x_in.shape_str());
  const int64_t B = x_in.size(0), T = x_in.size(1), width = x_in.size(2);
  TRIDENT_CHECK(n_head > 0 && width % n_head == 0, "rope: ", n_head,
                " heads do not divide the width ", width, " of ", x_in.shape_str());
  const int64_t D = width / n_head;
  TRIDENT_CHECK(D % 2 == 0, "rope: the head size ", D, " (", width, " / ", n_head,
                " heads) must be even");
  TRIDENT_CHECK(theta > 0, "rope: theta must be positive, got ", theta);
  TRIDENT_CHECK(position_offset >= 0, "rope: position_offset must be >= 0, got ", position_offset);
  const Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0)
    be(x).rope_forward(x.dtype(), out.raw_data(), x.raw_data(), B, T, n_head, D, theta,
                       position_offset, false);
  autograd::record(out, "rope", {x}, [B, T, n_head, D, theta, position_offset](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
    if (dx.numel() > 0)
      be(g).rope_forward(g.dtype(), dx.raw_data(), g.raw_data(), B, T, n_head, D, theta,
                         position_offset, true);
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  check_operand(gate_in, "swiglu", "gate");
  check_operand(up_in, "swiglu", "up", gate_in, "gate");
  TRIDENT_CHECK(gate_in.shape() == up_in.shape(), "swiglu: gate ", gate_in.shape_str(), " and up ",
                up_in.shape_str(), " must have the same shape");
  const Tensor gate = gate_in.contiguous(), up = up_in.contiguous();
  const int64_t n = gate.numel();
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  if (n > 0)
    be(gate).swiglu_forward(gate.dtype(), out.raw_data(), gate.raw_data(), up.raw_data(), n);
  const Tensor gd = gate.detach(), ud = up.detach();
  autograd::record(out, "swiglu", {gate, up}, [gd, ud, n](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dgate = Tensor::empty(gd.shape(), g.dtype(), g.device());
    Tensor dup = Tensor::empty(ud.shape(), g.dtype(), g.device());
    if (n > 0)
      be(g).swiglu_backward(g.dtype(), dgate.raw_data(), dup.raw_data(), gd.raw_data(),
                            ud.raw_data(), g.raw_data(), n);
    return std::vector<Tensor>{dgate, dup};
  });
  return out;
}

Tensor gqa_pack_qkv(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int64_t n_head,
                    int64_t n_kv_head) {
  check_operand(q_in, "gqa_pack_qkv", "q");
  check_operand(k_in, "gqa_pack_qkv", "k", q_in, "q");
  check_operand(v_in, "gqa_pack_qkv", "v", q_in, "q");
  TRIDENT_CHECK(q_in.dim() == 3 && k_in.dim() == 3 && v_in.dim() == 3,
                "gqa_pack_qkv: q, k and v must be (B, T, heads * D), got ", q_in.shape_str(), ", ",
                k_in.shape_str(), " and ", v_in.shape_str());
  TRIDENT_CHECK(n_head > 0 && n_kv_head > 0 && n_head % n_kv_head == 0, "gqa_pack_qkv: ", n_kv_head,
                " kv heads do not divide ", n_head, " query heads");
  const int64_t B = q_in.size(0), T = q_in.size(1);
  TRIDENT_CHECK(q_in.size(2) % n_head == 0, "gqa_pack_qkv: ", n_head,
                " heads do not divide q's width ", q_in.size(2));
  const int64_t D = q_in.size(2) / n_head;
  const Shape kv_shape{B, T, n_kv_head * D};
  TRIDENT_CHECK(k_in.shape() == kv_shape && v_in.shape() == kv_shape, "gqa_pack_qkv: k ",
                k_in.shape_str(), " and v ", v_in.shape_str(), " must be (", B, ", ", T, ", ",
                n_kv_head * D, ") for ", n_kv_head, " kv heads of size ", D, " (q ",
                q_in.shape_str(), ")");
  const Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const int64_t N = B * T;
  Tensor out = Tensor::empty({B, T, 3 * n_head * D}, q.dtype(), q.device());
  if (out.numel() > 0)
    be(q).gqa_pack_forward(q.dtype(), out.raw_data(), q.raw_data(), k.raw_data(), v.raw_data(), N,
                           n_head, n_kv_head, D);
  autograd::record(
      out, "gqa_pack_qkv", {q, k, v}, [B, T, N, n_head, n_kv_head, D](const Tensor& g_in) {
        const Tensor g = g_in.contiguous();
        Tensor dq = Tensor::empty({B, T, n_head * D}, g.dtype(), g.device());
        Tensor dk = Tensor::empty({B, T, n_kv_head * D}, g.dtype(), g.device());
        Tensor dv = Tensor::empty({B, T, n_kv_head * D}, g.dtype(), g.device());
        if (g.numel() > 0)
          be(g).gqa_pack_backward(g.dtype(), dq.raw_data(), dk.raw_data(), dv.raw_data(),
                                  g.raw_data(), N, n_head, n_kv_head, D);
        return std::vector<Tensor>{dq, dk, dv};
      });
  return out;
}

}  // namespace trident::ops
