#include "trident/core/tensor.hpp"

#include <algorithm>
#include <cstring>

#include "cast_grad.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident {

// --- storage ---------------------------------------------------------------------------
Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = bytes > 0 ? allocator_for(device).allocate(bytes) : nullptr;
}

Storage::~Storage() {
  if (data_ != nullptr) allocator_for(device_).deallocate(data_, bytes_);
}

// --- shape helpers -----------------------------------------------------------------------
Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// --- grad mode -------------------------------------------------------------------------
namespace {
thread_local bool t_grad_enabled = true;

int normalize_dim(int dim, int ndim, const char* op) {
  const int d = dim < 0 ? dim + ndim : dim;
  TRIDENT_CHECK(d >= 0 && d < ndim, op, ": dimension ", dim, " out of range for a ", ndim,
                "-d tensor");
  return d;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl().storage;
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}
}  // namespace

NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) {
  t_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  t_grad_enabled = prev_;
}
bool NoGradGuard::grad_enabled() {
  return t_grad_enabled;
}

// --- creation ----------------------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    TRIDENT_CHECK(d >= 0, "negative dimension in shape ", shape_to_string(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

// --- metadata ----------------------------------------------------------------------------
int64_t Tensor::size(int dim) const {
  return shape()[static_cast<size_t>(normalize_dim(dim, this->dim(), "size"))];
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::shape_str() const {
  return shape_to_string(shape());
}

void* Tensor::raw_data() const {
  auto& s = impl().storage;
  if (s->data() == nullptr) return nullptr;
  return static_cast<char*>(s->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  TRIDENT_CHECK(numel() == 1, "item() on a tensor of shape ", shape_str());
  Tensor c = to(Device::cpu());
  switch (c.dtype()) {
    case DType::F32:
      return *c.data<float>();
    case DType::F64:
      return *c.data<double>();
    case DType::I32:
      return *c.data<int32_t>();
    case DType::I64:
      return static_cast<double>(*c.data<int64_t>());
    default:
      return c.to(DType::F32).item();
  }
}

// --- layout ------------------------------------------------------------------------------
Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape(), dtype(), device());
  if (numel() > 0) {
    backend_for(device()).copy_strided(dtype(), out.raw_data(), raw_data(), strides().data(),
                                       shape().data(), dim());
  }
  autograd::record(out, "contiguous", {*this},
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor Tensor::reshape(const Shape& new_shape_in) const {
  Shape new_shape = new_shape_in;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      TRIDENT_CHECK(infer < 0, "reshape: more than one -1 in ", shape_to_string(new_shape_in));
      infer = static_cast<int>(i);
    } else {
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    TRIDENT_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", shape_str(),
                  " to ", shape_to_string(new_shape_in));
    new_shape[static_cast<size_t>(infer)] = numel() / known;
  }
  TRIDENT_CHECK(shape_numel(new_shape) == numel(), "reshape: cannot reshape ", shape_str(), " (",
                numel(), " elements) to ", shape_to_string(new_shape_in));
  Tensor src = contiguous();
  Tensor out = make_view(src, new_shape, contiguous_strides(new_shape), src.offset());
  const Shape old = shape();
  autograd::record(out, "reshape", {src},
                   [old](const Tensor& g) { return std::vector<Tensor>{g.reshape(old)}; });
  return out;
}

Tensor Tensor::transpose(int d0, int d1) const {
  const int a = normalize_dim(d0, dim(), "transpose");
  const int b = normalize_dim(d1, dim(), "transpose");
  Shape sh = shape(), st = strides();
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  Tensor out = make_view(*this, sh, st, offset());
  autograd::record(out, "transpose", {*this},
                   [a, b](const Tensor& g) { return std::vector<Tensor>{g.transpose(a, b)}; });
  return out;
}

Tensor Tensor::slice(int dim_in, int64_t start, int64_t end) const {
  const int d = normalize_dim(dim_in, dim(), "slice");
  const int64_t n = shape()[d];
  TRIDENT_CHECK(0 <= start && start <= end && end <= n, "slice: [", start, ", ", end,
                ") out of range for dimension ", d, " of size ", n);
  Shape sh = shape();
  sh[d] = end - start;
  Tensor out = make_view(*this, sh, strides(), offset() + start * strides()[d]);
  const Shape full_shape = shape();
  autograd::record(out, "slice", {*this}, [full_shape, d, start, end](const Tensor& g) {
    Tensor gi = Tensor::zeros(full_shape, g.dtype(), g.device());
    gi.slice(d, start, end).copy_(g);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), target);
  copy_bytes(out.raw_data(), target, src.raw_data(), src.device(), src.nbytes());
  const Device from = device();
  autograd::record(out, "to_device", {src},
                   [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), target, device());
  backend_for(device()).convert(target, out.raw_data(), dtype(), src.raw_data(), numel());
  if (dtype_is_floating(target) && dtype_is_floating(dtype())) detail::record_cast(out, src);
  return out;
}

namespace detail {
void record_cast(Tensor& out, const Tensor& src) {
  const DType from = src.dtype();
  const Shape shape = src.shape();
  const Device device = src.device();
  autograd::record(out, "to_dtype", {src}, [from, shape, device](const Tensor& g) {
    // f32 and bf16 are the pairs every backend adds in one pass (CUDA has no f64 kernel).
    const auto fused = [](DType t) { return t == DType::F32 || t == DType::BF16; };
    const Tensor held = autograd::leaf_input_grad(0);
    if (held.defined() && held.is_contiguous() && held.dtype() == from && held.shape() == shape &&
        held.device() == device && g.device() == device && fused(from) && fused(g.dtype())) {
      const Tensor gc = g.contiguous();
      backend_for(device).accumulate_converted(from, held.raw_data(), gc.dtype(), gc.raw_data(),
                                               gc.numel());
      return std::vector<Tensor>{Tensor()};
    }
    return std::vector<Tensor>{g.to(from)};
  });
}
}  // namespace detail

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  autograd::record(out, "clone", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

void Tensor::copy_(const Tensor& src_in) {
  TRIDENT_CHECK(src_in.shape() == shape(), "copy_: source shape ", src_in.shape_str(),
                " does not match destination ", shape_str());
  NoGradGuard no_grad;
  Tensor src = src_in.dtype() == dtype() ? src_in : src_in.to(dtype());
  src = src.to(device());
  if (numel() == 0) return;
  Backend& be = backend_for(device());
  if (is_contiguous() && src.is_contiguous()) {
    copy_bytes(raw_data(), device(), src.raw_data(), device(), nbytes());
  } else if (is_contiguous()) {
    be.copy_strided(dtype(), raw_data(), src.raw_data(), src.strides().data(), shape().data(),
                    dim());
  } else {
    // Strided destination (a slice written by slice()'s backward): scatter element by element.
    TRIDENT_CHECK(device().is_cpu(), "copy_ into a non-contiguous device tensor is not supported");
    Tensor c = src.contiguous();
    std::vector<int64_t> idx(shape().size(), 0);
    const size_t es = dtype_size(dtype());
    const char* in = static_cast<const char*>(c.raw_data());
    char* out = static_cast<char*>(raw_data());
    const int64_t n = numel();
    for (int64_t i = 0; i < n; ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides()[d];
      std::memcpy(out + off * static_cast<int64_t>(es), in + i * static_cast<int64_t>(es), es);
      for (size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < shape()[d]) break;
        idx[d] = 0;
      }
    }
  }
}

void Tensor::fill_(double value) {
  TRIDENT_CHECK(is_contiguous(), "fill_ on a non-contiguous tensor");
  if (numel() > 0) backend_for(device()).fill(dtype(), raw_data(), value, numel());
}

// --- autograd ----------------------------------------------------------------------------
Tensor& Tensor::requires_grad_(bool on) {
  TRIDENT_CHECK(!on || dtype_is_floating(dtype()), "requires_grad on a ", dtype_name(dtype()),
                " tensor: only floating tensors have gradients");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  return impl().grad ? Tensor(impl().grad) : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    TRIDENT_CHECK(g.shape() == shape(), "set_grad: gradient shape ", g.shape_str(),
                  " does not match ", shape_str());
  }
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() {
  impl().grad = nullptr;
}

void Tensor::backward(const Tensor& grad_output) const {
  Tensor g = grad_output;
  if (!g.defined()) {
    TRIDENT_CHECK(numel() == 1, "backward() without a gradient needs a scalar, got shape ",
                  shape_str());
    g = Tensor::ones(shape(), dtype(), device());
  }
  TRIDENT_CHECK(g.shape() == shape(), "backward: gradient shape ", g.shape_str(),
                " does not match ", shape_str());
  autograd::run_backward(*this, g);
}

void Tensor::register_grad_ready_hook(GradReadyHook hook) {
  TRIDENT_CHECK(is_leaf(), "grad-ready hooks are for leaf tensors (parameters)");
  impl().grad_ready_hooks.push_back(std::move(hook));
}

}  // namespace trident
