// Broadcasting element-wise ops and reductions.
#include <algorithm>
#include <array>

#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::ops {

namespace {

void check_same_device_dtype(const Tensor& a, const Tensor& b, const char* op) {
  TRIDENT_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(),
                " and ", b.device().str(), ")");
  TRIDENT_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()), ")");
}

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TRIDENT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_to_string(a), " and ",
                  shape_to_string(b), " do not broadcast");
    out[i] = std::max(da, db);
  }
  return out;
}

// Strides that read `t` as if it had shape `out` (0 on broadcast dimensions).
Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape st(out.size(), 0);
  const size_t lead = out.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i) {
    st[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return st;
}

Tensor binary_raw(BinaryOpKind op, const Tensor& a, const Tensor& b, const char* name) {
  check_same_device_dtype(a, b, name);
  const Shape out_shape = broadcast_shape(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  const Shape sa = broadcast_strides(a, out_shape), sb = broadcast_strides(b, out_shape);
  backend_for(a.device())
      .binary_strided(op, a.dtype(), out.raw_data(), a.raw_data(), sa.data(), b.raw_data(),
                      sb.data(), out_shape.data(), static_cast<int>(out_shape.size()));
  return out;
}

Tensor scalar_like(const Tensor& a, double v) {
  return Tensor::full({}, v, a.dtype(), a.device());
}

}  // namespace

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  TRIDENT_CHECK(shape.size() <= t.shape().size(), "sum_to: cannot sum ", t.shape_str(), " to ",
                shape_to_string(shape));
  const size_t lead = t.shape().size() - shape.size();
  TRIDENT_CHECK(t.dim() <= 8, "sum_to: at most 8 dimensions, got ", t.dim());
  Shape kept(t.shape().size());
  std::array<bool, 8> reduce{};
  for (size_t i = 0; i < t.shape().size(); ++i) {
    const int64_t target = i < lead ? 1 : shape[i - lead];
    TRIDENT_CHECK(target == t.shape()[i] || target == 1, "sum_to: cannot sum ", t.shape_str(),
                  " to ", shape_to_string(shape));
    reduce[i] = target == 1 && t.shape()[i] != 1;
    kept[i] = target;
  }
  Tensor src = t.contiguous();
  Tensor out = Tensor::empty(kept, t.dtype(), t.device());
  if (out.numel() > 0) {
    if (src.numel() == 0) {
      out.zero_();
    } else {
      backend_for(t.device())
          .reduce_sum_to(t.dtype(), out.raw_data(), src.raw_data(), src.shape().data(),
                         reduce.data(), src.dim());
    }
  }
  const Shape from = t.shape();
  autograd::record(out, "sum_to", {src}, [from](const Tensor& g) {
    Tensor ones = Tensor::ones(from, g.dtype(), g.device());
    return std::vector<Tensor>{binary_raw(BinaryOpKind::Mul, ones, g, "sum_to backward")};
  });
  return out.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOpKind::Add, a, b, "add");
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record(out, "add", {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOpKind::Sub, a, b, "sub");
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record(out, "sub", {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(mul_scalar(g, -1.0), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOpKind::Mul, a, b, "mul");
  const Tensor ad = a.detach(), bd = b.detach();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  autograd::record(out, "mul", {a, b}, [ad, bd, ga, gb](const Tensor& g) {
    return std::vector<Tensor>{
        ga ? sum_to(binary_raw(BinaryOpKind::Mul, g, bd, "mul"), ad.shape()) : Tensor(),
        gb ? sum_to(binary_raw(BinaryOpKind::Mul, g, ad, "mul"), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOpKind::Div, a, b, "div");
  const Tensor ad = a.detach(), bd = b.detach();
  const bool gb = b.requires_grad();
  autograd::record(out, "div", {a, b}, [ad, bd, gb](const Tensor& g) {
    Tensor ga = sum_to(binary_raw(BinaryOpKind::Div, g, bd, "div"), ad.shape());
    Tensor gbt;
    if (gb) {  // d(a/b)/db = -a / b^2
      Tensor q = binary_raw(BinaryOpKind::Div, binary_raw(BinaryOpKind::Mul, g, ad, "div"),
                            binary_raw(BinaryOpKind::Mul, bd, bd, "div"), "div");
      gbt = sum_to(mul_scalar(q, -1.0), bd.shape());
    }
    return std::vector<Tensor>{ga, gbt};
  });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor src = a.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (out.numel() > 0) {
    backend_for(a.device()).scale(a.dtype(), out.raw_data(), src.raw_data(), s, a.numel());
  }
  autograd::record(out, "mul_scalar", {src},
                   [s](const Tensor& g) { return std::vector<Tensor>{mul_scalar(g, s)}; });
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor out = binary_raw(BinaryOpKind::Add, a, scalar_like(a, s), "add_scalar");
  autograd::record(out, "add_scalar", {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

void add_(Tensor& a, const Tensor& b_in) {
  TRIDENT_CHECK(a.shape() == b_in.shape(), "add_: shapes ", a.shape_str(), " and ",
                b_in.shape_str(), " differ");
  check_same_device_dtype(a, b_in, "add_");
  TRIDENT_CHECK(a.is_contiguous(), "add_ into a non-contiguous tensor");
  Tensor b = b_in.contiguous();
  if (a.numel() > 0)
    backend_for(a.device()).axpy(a.dtype(), a.raw_data(), b.raw_data(), 1.0, a.numel());
}

Tensor sum(const Tensor& a) {
  Tensor src = a.contiguous();
  const double s =
      a.numel() ? backend_for(a.device()).sum(a.dtype(), src.raw_data(), a.numel()) : 0;
  Tensor out = Tensor::full({}, s, a.dtype(), a.device());
  const Shape shape = a.shape();
  autograd::record(out, "sum", {src}, [shape](const Tensor& g) {
    Tensor ones = Tensor::ones(shape, g.dtype(), g.device());
    return std::vector<Tensor>{binary_raw(BinaryOpKind::Mul, ones, g, "sum backward")};
  });
  return out;
}

Tensor mean(const Tensor& a) {
  TRIDENT_CHECK(a.numel() > 0, "mean of an empty tensor");
  return mul_scalar(sum(a), 1.0 / static_cast<double>(a.numel()));
}

}  // namespace trident::ops
