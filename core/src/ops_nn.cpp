// Matrix multiplies and the transformer ops. Backward closures capture detached inputs (never
// the output, which would form a reference cycle through its grad_fn).
#include <cmath>
#include <stdexcept>

#include "linear_grads.hpp"
#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::ops {

namespace {

void check_float(const Tensor& t, const char* op, const char* what) {
  TRIDENT_CHECK(t.defined(), op, ": ", what, " is undefined");
  TRIDENT_CHECK(dtype_is_floating(t.dtype()), op, ": ", what, " must be floating, got ",
                dtype_name(t.dtype()));
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  TRIDENT_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(),
                " and ", b.device().str(), ")");
  TRIDENT_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()), ")");
}

Backend& be(const Tensor& t) {
  return backend_for(t.device());
}

// C (M,N) = op(A) op(B) on contiguous 2-D buffers, beta = 0.
void gemm2d(const Tensor& A, bool ta, const Tensor& B, bool tb, Tensor& C, int64_t M, int64_t N,
            int64_t K, double beta = 0.0) {
  be(A).gemm_batched(A.dtype(), ta, tb, 1, M, N, K, 1.0, A.raw_data(), ta ? M : K, 0, B.raw_data(),
                     tb ? K : N, 0, beta, C.raw_data(), N, 0);
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_float(a_in, "matmul", "left operand");
  check_same(a_in, b_in, "matmul");
  TRIDENT_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: operands must be at least 2-d, got ",
                a_in.shape_str(), " and ", b_in.shape_str());
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t K = a.shape().back();
  TRIDENT_CHECK(b.size(-2) == K, "matmul: inner dimensions differ: ", a.shape_str(), " @ ",
                b.shape_str());
  const int64_t M = a.size(-2), N = b.size(-1);
  Shape out_shape = a.shape();
  out_shape.back() = N;
  Tensor out;
  if (b.dim() == 2) {
    // Fold every leading dimension of a into its rows: one large gemm.
    const int64_t R = a.numel() / K;
    out = Tensor::empty(out_shape, a.dtype(), a.device());
    if (out.numel() > 0) gemm2d(a, false, b, false, out, R, N, K);
    const Tensor ad = a.detach(), bd = b.detach();
    autograd::record(out, "matmul", {a, b}, [ad, bd, R, N, K](const Tensor& g_in) {
      const Tensor g = g_in.contiguous();
      Tensor da = Tensor::empty(ad.shape(), ad.dtype(), ad.device());
      Tensor db = Tensor::empty(bd.shape(), bd.dtype(), bd.device());
      gemm2d(g, false, bd, true, da, R, K, N);  // dA = dC B^T
      gemm2d(ad, true, g, false, db, K, N, R);  // dB = A^T dC
      return std::vector<Tensor>{da, db};
    });
    return out;
  }
  TRIDENT_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0),
                "matmul: batched operands must be (B,M,K) @ (B,K,N), got ", a.shape_str(), " @ ",
                b.shape_str());
  const int64_t Bn = a.size(0);
  out = Tensor::empty({Bn, M, N}, a.dtype(), a.device());
  if (out.numel() > 0) {
    be(a).gemm_batched(a.dtype(), false, false, Bn, M, N, K, 1.0, a.raw_data(), K, M * K,
                       b.raw_data(), N, K * N, 0.0, out.raw_data(), N, M * N);
  }
  const Tensor ad = a.detach(), bd = b.detach();
  autograd::record(out, "bmm", {a, b}, [ad, bd, Bn, M, N, K](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor da = Tensor::empty(ad.shape(), ad.dtype(), ad.device());
    Tensor db = Tensor::empty(bd.shape(), bd.dtype(), bd.device());
    be(g).gemm_batched(g.dtype(), false, true, Bn, M, K, N, 1.0, g.raw_data(), N, M * N,
                       bd.raw_data(), N, K * N, 0.0, da.raw_data(), K, M * K);
    be(g).gemm_batched(g.dtype(), true, false, Bn, K, N, M, 1.0, ad.raw_data(), K, M * K,
                       g.raw_data(), N, M * N, 0.0, db.raw_data(), N, K * N);
    return std::vector<Tensor>{da, db};
  });
  return out;
}

namespace {

// A Linear layer's operands, contiguous, with x viewed as (R, in) and W as (outf, in); w and b
// are bf16 copies of an f32 weight and bias when `mixed` (bf16 input, f32 master weight).
struct LinearArgs {
  Tensor x, w, b;
  int64_t R, in, outf;
  Shape out_shape;
  bool mixed = false;
};

// A mixed layer's parameter must be f32 on the input's device; any other, the input's dtype.
void check_param(const Tensor& x, const Tensor& p, bool mixed, const char* op) {
  if (!mixed) return check_same(x, p, op);
  TRIDENT_CHECK(p.device() == x.device(), op, ": tensors on different devices (", x.device().str(),
                " and ", p.device().str(), ")");
  TRIDENT_CHECK(p.dtype() == DType::F32, op, ": a bf16 input takes f32 (master) or bf16 ",
                "parameters, got ", dtype_name(p.dtype()));
}

LinearArgs linear_args(const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                       const char* op) {
  check_float(x_in, op, "input");
  TRIDENT_CHECK(weight.defined(), op, ": weight is undefined");
  const bool mixed = detail::is_mixed(x_in, weight);
  check_param(x_in, weight, mixed, op);
  TRIDENT_CHECK(weight.dim() == 2, op, ": weight must be (out, in), got ", weight.shape_str());
  const int64_t in = weight.size(1), outf = weight.size(0);
  TRIDENT_CHECK(x_in.dim() >= 1 && x_in.shape().back() == in, op, ": input ", x_in.shape_str(),
                " does not end in the weight's input size ", in);
  if (bias.defined()) {
    check_param(x_in, bias, mixed, op);
    TRIDENT_CHECK(bias.dim() == 1 && bias.size(0) == outf, op, ": bias ", bias.shape_str(),
                  " does not match ", outf, " outputs");
  }
  LinearArgs a;
  a.mixed = mixed;
  a.x = x_in.contiguous();
  a.w = mixed ? detail::gemm_operand(weight, x_in.dtype()) : weight.contiguous();
  if (bias.defined()) a.b = mixed ? detail::gemm_operand(bias, x_in.dtype()) : bias.contiguous();
  a.in = in;
  a.outf = outf;
  a.R = a.x.numel() / in;
  a.out_shape = a.x.shape();
  a.out_shape.back() = outf;
  return a;
}

// dx (when needed), dW and db (with a bias) of y = x W^T + b from dy (R, outf), contiguous.
std::vector<Tensor> linear_grads(const Tensor& g, const Tensor& xd, const Tensor& wd, int64_t R,
                                 int64_t in, int64_t outf, bool has_bias, bool need_dx) {
  Tensor dx, db;
  if (need_dx) {
    dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    gemm2d(g, false, wd, false, dx, R, in, outf);  // dx = dy W
  }
  Tensor dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
  if (has_bias) db = Tensor::empty({outf}, g.dtype(), g.device());
  // dW = dy^T x, db = column sums of dy
  be(g).linear_weight_grad(g.dtype(), dw.raw_data(), has_bias ? db.raw_data() : nullptr,
                           g.raw_data(), xd.raw_data(), R, outf, in);
  return {dx, dw, db};
}

// linear_grads of a mixed layer: dx in bf16 from the bf16 weight copy wd; dW and db in f32
// (detail::f32_param_grads), inputs 1 and 2 of the running node.
std::vector<Tensor> mixed_linear_grads(const Tensor& g, const Tensor& xd, const Tensor& wd,
                                       int64_t R, int64_t in, int64_t outf, bool has_bias,
                                       bool need_dx) {
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    gemm2d(g, false, wd, false, dx, R, in, outf);  // dx = dy W
  }
  detail::ParamGrads p = detail::f32_param_grads(g, xd, has_bias, 1, 2, R, outf, in);
  return {dx, p.dw, p.db};
}

}  // namespace

Tensor linear(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  const LinearArgs a = linear_args(x_in, weight, bias, "linear");
  Tensor out = Tensor::empty(a.out_shape, a.x.dtype(), a.x.device());
  if (out.numel() > 0) {
    be(a.x).linear_forward(a.x.dtype(), out.raw_data(), a.x.raw_data(), a.w.raw_data(),
                           a.b.defined() ? a.b.raw_data() : nullptr, a.R, a.outf, a.in);
  }
  const Tensor xd = a.x.detach(), wd = a.w.detach();
  const bool has_bias = bias.defined(), need_dx = x_in.requires_grad();
  if (a.mixed) {
    // The f32 weight and bias are the node's inputs: their f32 gradients come from one matmul
    // (into the leaves' own gradients when they have one), no bf16 gradient or cast node.
    autograd::record(
        out, "linear", {a.x, weight, bias},
        [xd, wd, R = a.R, in = a.in, outf = a.outf, has_bias, need_dx](const Tensor& g_in) {
          return mixed_linear_grads(g_in.contiguous(), xd, wd, R, in, outf, has_bias, need_dx);
        });
    return out;
  }
  autograd::record(
      out, "linear", {a.x, a.w, bias},
      [xd, wd, R = a.R, in = a.in, outf = a.outf, has_bias, need_dx](const Tensor& g_in) {
        return linear_grads(g_in.contiguous(), xd, wd, R, in, outf, has_bias, need_dx);
      });
  return out;
}

Tensor linear_gelu(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  const LinearArgs a = linear_args(x_in, weight, bias, "linear_gelu");
  Tensor out = Tensor::empty(a.out_shape, a.x.dtype(), a.x.device());
  Tensor pre = Tensor::empty(a.out_shape, a.x.dtype(), a.x.device());  // the GELU input
  if (out.numel() > 0) {
    be(a.x).linear_gelu_forward(a.x.dtype(), out.raw_data(), pre.raw_data(), a.x.raw_data(),
                                a.w.raw_data(), a.b.defined() ? a.b.raw_data() : nullptr, a.R,
                                a.outf, a.in);
  }
  const Tensor xd = a.x.detach(), wd = a.w.detach();
  const bool has_bias = bias.defined(), need_dx = x_in.requires_grad();
  if (a.mixed) {
    autograd::record(
        out, "linear_gelu", {a.x, weight, bias},
        [xd, wd, pre, R = a.R, in = a.in, outf = a.outf, has_bias, need_dx](const Tensor& g_in) {
          const Tensor g = g_in.contiguous();
          Tensor du = Tensor::empty(pre.shape(), g.dtype(), g.device());
          be(g).gelu_backward(g.dtype(), du.raw_data(), pre.raw_data(), g.raw_data(), pre.numel());
          return mixed_linear_grads(du, xd, wd, R, in, outf, has_bias, need_dx);
        });
    return out;
  }
  autograd::record(
      out, "linear_gelu", {a.x, a.w, bias},
      [xd, wd, pre, R = a.R, in = a.in, outf = a.outf, has_bias, need_dx](const Tensor& g_in) {
        const Tensor g = g_in.contiguous();
        Tensor du = Tensor::empty(pre.shape(), g.dtype(), g.device());
        be(g).gelu_backward(g.dtype(), du.raw_data(), pre.raw_data(), g.raw_data(), pre.numel());
        return linear_grads(du, xd, wd, R, in, outf, has_bias, need_dx);
      });
  return out;
}

Tensor embedding(const Tensor& ids_in, const Tensor& table, int64_t first, int64_t vocab) {
  check_float(table, "embedding", "table");
  TRIDENT_CHECK(table.dim() == 2, "embedding: table must be (V, C), got ", table.shape_str());
  TRIDENT_CHECK(ids_in.dtype() == DType::I32, "embedding: ids must be i32, got ",
                dtype_name(ids_in.dtype()));
  TRIDENT_CHECK(ids_in.device() == table.device(), "embedding: ids on ", ids_in.device().str(),
                ", table on ", table.device().str());
  const Tensor ids = ids_in.contiguous(), t = table.contiguous();
  const int64_t N = ids.numel(), V = t.size(0), C = t.size(1);
  if (vocab < 0) vocab = V;
  TRIDENT_CHECK(first >= 0 && first + V <= vocab, "embedding: rows [", first, ", ", first + V,
                ") of the table are not inside a vocabulary of ", vocab);
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, t.dtype(), t.device());
  try {
    if (N > 0)
      be(t).embedding_forward(t.dtype(), out.raw_data(), ids.data<int32_t>(), t.raw_data(), N, V, C,
                              first, vocab);
  } catch (const std::out_of_range& e) {
    throw Error(str_cat("embedding: ", e.what(), " (table has ", V, " rows)"));
  }
  autograd::record(out, "embedding", {t}, [ids, N, V, C, first, vocab](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    // On CUDA, a table that already holds a gradient (the tied LM head's, an earlier
    // micro-batch's, a zeroed data-parallel bucket view) receives the rows in place: no zeroed
    // (V, C) table and no separate add, with the same bits (the kernel adds each row's summed
    // run). The CPU kernel scatters in position order, so it keeps the fresh table.
    const Tensor held = autograd::leaf_input_grad(0);
    const bool in_place = g.device().is_cuda() && held.defined() && held.is_contiguous() &&
                          held.dtype() == g.dtype() && held.device() == g.device() &&
                          held.shape() == Shape{V, C};
    Tensor dt = in_place ? held : Tensor::empty({V, C}, g.dtype(), g.device());
    be(g).embedding_backward(g.dtype(), dt.raw_data(), g.raw_data(), ids.data<int32_t>(), N, V, C,
                             first, vocab, in_place);
    return std::vector<Tensor>{in_place ? Tensor() : dt};
  });
  return out;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
  check_float(x_in, "layer_norm", "input");
  check_same(x_in, weight, "layer_norm");
  check_same(x_in, bias, "layer_norm");
  const int64_t C = x_in.shape().back();
  TRIDENT_CHECK(weight.dim() == 1 && weight.size(0) == C && bias.dim() == 1 && bias.size(0) == C,
                "layer_norm: weight ", weight.shape_str(), " and bias ", bias.shape_str(),
                " must be (", C, ",) for input ", x_in.shape_str());
  const Tensor x = x_in.contiguous(), w = weight.contiguous(), b = bias.contiguous();
  const int64_t N = x.numel() / C;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  // Saved in f32 for bf16 rows: backward rebuilds (x - mean) * rstd from them, and a bf16 mean
  // (spacing 0.0625 near 10) would shift every normalised value of its row.
  Tensor mean = Tensor::empty({N}, stats_dtype(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({N}, stats_dtype(x.dtype()), x.device());
  if (N > 0)
    be(x).layernorm_forward(x.dtype(), out.raw_data(), mean.raw_data(), rstd.raw_data(),
                            x.raw_data(), w.raw_data(), b.raw_data(), N, C, eps);
  const Tensor xd = x.detach(), wd = w.detach();
  autograd::record(out, "layer_norm", {x, w, b}, [xd, wd, mean, rstd, N, C](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
    Tensor dw = Tensor::empty({C}, g.dtype(), g.device());
    Tensor db = Tensor::empty({C}, g.dtype(), g.device());
    be(g).layernorm_backward(g.dtype(), dx.raw_data(), dw.raw_data(), db.raw_data(), g.raw_data(),
                             xd.raw_data(), wd.raw_data(), mean.raw_data(), rstd.raw_data(), N, C);
    return std::vector<Tensor>{dx, dw, db};
  });
  return out;
}

Tensor gelu(const Tensor& x_in) {
  check_float(x_in, "gelu", "input");
  const Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) be(x).gelu_forward(x.dtype(), out.raw_data(), x.raw_data(), x.numel());
  const Tensor xd = x.detach();
  autograd::record(out, "gelu", {x}, [xd](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(xd.shape(), g.dtype(), g.device());
    be(g).gelu_backward(g.dtype(), dx.raw_data(), xd.raw_data(), g.raw_data(), xd.numel());
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor softmax(const Tensor& x_in) {
  check_float(x_in, "softmax", "input");
  TRIDENT_CHECK(x_in.dim() >= 1, "softmax of a 0-d tensor");
  const Tensor x = x_in.contiguous();
  const int64_t cols = x.shape().back(), rows = cols ? x.numel() / cols : 0;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) be(x).softmax_forward(x.dtype(), out.raw_data(), x.raw_data(), rows, cols);
  const Tensor od = out.detach();
  autograd::record(out, "softmax", {x}, [od, rows, cols](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(od.shape(), g.dtype(), g.device());
    be(g).softmax_backward(g.dtype(), dx.raw_data(), od.raw_data(), g.raw_data(), rows, cols);
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor causal_self_attention(const Tensor& qkv_in, int64_t n_head) {
  check_float(qkv_in, "attention", "qkv");
  TRIDENT_CHECK(qkv_in.dim() == 3 && qkv_in.size(2) % 3 == 0,
                "attention: qkv must be (B, T, 3C), got ", qkv_in.shape_str());
  const Tensor qkv = qkv_in.contiguous();
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  TRIDENT_CHECK(n_head > 0 && C % n_head == 0, "attention: ", n_head,
                " heads do not divide the width ", C);
  Tensor out = Tensor::empty({B, T, C}, qkv.dtype(), qkv.device());
  // What backward needs: (B, n_head, T, T) probabilities on the CPU, less on a GPU.
  Tensor att = Tensor::empty({be(qkv).attention_saved_elements(qkv.dtype(), B, T, C, n_head)},
                             qkv.dtype(), qkv.device());
  if (out.numel() > 0)
    be(qkv).attention_forward(qkv.dtype(), out.raw_data(), att.raw_data(), qkv.raw_data(), B, T, C,
                              n_head);
  // Backward reads the output itself (the CUDA kernels' D = rowsum(dO * O)): kept, detached.
  const Tensor qd = qkv.detach(), od = out.detach();
  autograd::record(out, "attention", {qkv}, [qd, od, att, B, T, C, n_head](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dqkv = Tensor::empty(qd.shape(), g.dtype(), g.device());
    be(g).attention_backward(g.dtype(), dqkv.raw_data(), g.raw_data(), qd.raw_data(), od.raw_data(),
                             att.raw_data(), B, T, C, n_head);
    return std::vector<Tensor>{dqkv};
  });
  return out;
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in) {
  check_float(logits_in, "cross_entropy", "logits");
  // f16 has no kernels: the loss of an f32 copy, whose backward returns f16 gradients.
  if (logits_in.dtype() == DType::F16) return cross_entropy(logits_in.to(DType::F32), targets_in);
  TRIDENT_CHECK(targets_in.dtype() == DType::I32, "cross_entropy: targets must be i32, got ",
                dtype_name(targets_in.dtype()));
  TRIDENT_CHECK(logits_in.dim() >= 2, "cross_entropy: logits must be (N, V) or (B, T, V), got ",
                logits_in.shape_str());
  const int64_t V = logits_in.shape().back();
  const int64_t N = logits_in.numel() / V;
  TRIDENT_CHECK(targets_in.numel() == N, "cross_entropy: ", targets_in.numel(), " targets for ", N,
                " rows of logits ", logits_in.shape_str());
  const Tensor logits = logits_in.contiguous();
  const Tensor targets = targets_in.to(logits.device()).contiguous();
  // Losses and the saved lse are f32 for bf16 logits (PyTorch autocast's and llm.c's choice);
  // the bf16 logits themselves are read as they are, without an f32 copy.
  Tensor losses = Tensor::empty({N}, stats_dtype(logits.dtype()), logits.device());
  Tensor lse = Tensor::empty({N}, stats_dtype(logits.dtype()), logits.device());
  try {
    if (N > 0)
      be(logits).cross_entropy_forward(logits.dtype(), losses.raw_data(), lse.raw_data(),
                                       logits.raw_data(), targets.data<int32_t>(), N, V);
  } catch (const std::out_of_range& e) {
    throw Error(str_cat("cross_entropy: ", e.what(), " (vocabulary of ", V, ")"));
  }
  return cross_entropy_from_lse(logits, targets, losses, lse, 0);
}

Tensor cross_entropy_fused(const Tensor& logits_in, const Tensor& targets_in, int64_t vocab,
                           double grad_scale) {
  check_float(logits_in, "cross_entropy_fused", "logits");
  if (logits_in.dtype() == DType::F16) {
    return cross_entropy_fused(logits_in.to(DType::F32), targets_in, vocab, grad_scale);
  }
  TRIDENT_CHECK(targets_in.dtype() == DType::I32, "cross_entropy: targets must be i32, got ",
                dtype_name(targets_in.dtype()));
  TRIDENT_CHECK(logits_in.dim() >= 2, "cross_entropy: logits must be (N, V) or (B, T, V), got ",
                logits_in.shape_str());
  const int64_t V = logits_in.shape().back();
  const int64_t N = logits_in.numel() / V;
  TRIDENT_CHECK(targets_in.numel() == N, "cross_entropy: ", targets_in.numel(), " targets for ", N,
                " rows of logits ", logits_in.shape_str());
  TRIDENT_CHECK(vocab > 0 && vocab <= V, "cross_entropy: a vocabulary of ", vocab,
                " for logits of ", V, " columns (it must lie in [1, ", V, "])");
  const bool grad = autograd::needs_grad({&logits_in});
  TRIDENT_CHECK(!grad || logits_in.grad_fn(),
                "cross_entropy_fused overwrites its logits with their gradient: give it an op's "
                "output (the LM head's logits), not a leaf tensor");
  // A strided view is copied, and the copy consumed.
  const Tensor logits = logits_in.contiguous();
  const Tensor targets = targets_in.to(logits.device()).contiguous();
  const DType st = stats_dtype(logits.dtype());
  Tensor losses = Tensor::empty({N}, st, logits.device());
  Tensor dloss = grad ? Tensor::empty({}, st, logits.device()) : Tensor();
  try {
    if (N > 0) {
      // Loss only (no dloss): the kernel reads the logits and writes nothing to them.
      be(logits).cross_entropy_fused(logits.dtype(), logits.raw_data(), losses.raw_data(),
                                     grad ? dloss.raw_data() : nullptr, targets.data<int32_t>(), N,
                                     V, vocab, grad_scale);
    }
  } catch (const std::out_of_range& e) {
    throw Error(str_cat("cross_entropy: ", e.what(), " (vocabulary of ", vocab, ")"));
  }
  Tensor out = Tensor::empty({}, st, logits.device());
  Tensor inv_count = Tensor::empty({}, st, logits.device());
  be(logits).cross_entropy_mean(logits.dtype(), out.raw_data(), inv_count.raw_data(),
                                losses.raw_data(), targets.data<int32_t>(), N);
  if (!grad || N == 0) {
    if (grad) {  // no rows: a zero gradient of the logits' shape
      autograd::record(out, "cross_entropy_fused", {logits}, [logits](const Tensor&) {
        return std::vector<Tensor>{Tensor::zeros(logits.shape(), logits.dtype(), logits.device())};
      });
    }
    return out;
  }
  // The logits' storage now holds their gradient for an upstream gradient of grad_scale.
  const Tensor dlogits = logits.detach();
  autograd::record(out, "cross_entropy_fused", {logits}, [dlogits, grad_scale](const Tensor& g) {
    NoGradGuard no_grad;
    // g / grad_scale, a division so that the factor is exactly 1 when g is the expected
    // (f32-rounded) gradient: g * (1 / grad_scale) is 1 - 2^-24 for some m at grad_scale 1/m (41,
    // 47, ...). At factor 1 the rescale kernel returns at once.
    const DType stats = stats_dtype(dlogits.dtype());
    const Tensor g32 = g.to(stats);
    const Tensor factor =
        grad_scale == 1.0 ? g32 : div(g32, Tensor::full({}, grad_scale, stats, g32.device()));
    be(dlogits).cross_entropy_fused_rescale(dlogits.dtype(), dlogits.raw_data(), factor.raw_data(),
                                            dlogits.numel());
    return std::vector<Tensor>{dlogits};
  });
  return out;
}

Tensor cross_entropy_from_lse(const Tensor& logits, const Tensor& targets, const Tensor& losses,
                              const Tensor& lse, int64_t vocab_start) {
  const int64_t V = logits.shape().back(), N = logits.numel() / V;
  const DType st = stats_dtype(logits.dtype());
  TRIDENT_CHECK(logits.is_contiguous() && targets.is_contiguous() && targets.numel() == N &&
                    losses.numel() == N && lse.numel() == N && losses.dtype() == st &&
                    lse.dtype() == st,
                "cross_entropy_from_lse: expects contiguous logits (N, V), and targets, losses and "
                "lse of N rows (losses and lse in ",
                dtype_name(st), ")");
  // The mean over non-ignored rows stays on the device: nothing is read back.
  Tensor out = Tensor::empty({}, st, logits.device());
  Tensor inv_count = Tensor::empty({}, st, logits.device());
  be(logits).cross_entropy_mean(logits.dtype(), out.raw_data(), inv_count.raw_data(),
                                losses.raw_data(), targets.data<int32_t>(), N);
  const Tensor ld = logits.detach();
  autograd::record(out, "cross_entropy", {logits},
                   [ld, lse, targets, inv_count, N, V, vocab_start](const Tensor& g) {
                     NoGradGuard no_grad;
                     // dloss_i = g / count for every row (ignored rows get a zero gradient).
                     const Tensor scale = mul(g.to(inv_count.dtype()), inv_count);
                     const Tensor dl = mul(Tensor::ones({N}, scale.dtype(), scale.device()), scale);
                     Tensor dlogits = Tensor::empty(ld.shape(), ld.dtype(), ld.device());
                     if (N > 0) {
                       be(ld).cross_entropy_backward(ld.dtype(), dlogits.raw_data(), ld.raw_data(),
                                                     lse.raw_data(), targets.data<int32_t>(),
                                                     dl.raw_data(), N, V, vocab_start);
                     }
                     return std::vector<Tensor>{dlogits};
                   });
  return out;
}

Tensor dropout(const Tensor& x_in, float p, bool training, uint64_t seed, uint64_t offset) {
  TRIDENT_CHECK(p >= 0.0f && p < 1.0f, "dropout probability must be in [0, 1), got ", p);
  if (!training || p == 0.0f) return x_in;
  const Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0)
    be(x).dropout_forward(x.dtype(), out.raw_data(), mask.raw_data(), x.raw_data(), x.numel(), p,
                          seed, offset);
  autograd::record(out, "dropout", {x}, [mask](const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(mask.shape(), g.dtype(), g.device());
    be(g).dropout_backward(g.dtype(), dx.raw_data(), g.raw_data(), mask.raw_data(), mask.numel());
    return std::vector<Tensor>{dx};
  });
  return out;
}

}  // namespace trident::ops
