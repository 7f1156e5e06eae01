// Tensor: a strided view of shared storage, with an element type, a device and, when it takes
// part in autograd, a gradient and the node that produced it.
//
// Copying a Tensor copies a handle (as torch::Tensor); views (reshape of a contiguous tensor,
// transpose, slice) share storage. Kernels take contiguous buffers: ops call contiguous(),
// which copies only when needed.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/device.hpp"
#include "trident/core/dtype.hpp"
#include "trident/core/error.hpp"

namespace trident {

using Shape = std::vector<int64_t>;

namespace autograd {
struct Node;
}

// A block of device memory from the device's caching allocator, returned to it on destruction.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Tensor;
using GradReadyHook = std::function<void(Tensor& param)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::F32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::vector<GradReadyHook> grad_ready_hooks;  // leaves only: called when .grad is final
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- creation ---------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());

  // --- metadata -----------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t size(int dim) const;
  const Shape& strides() const { return impl().strides; }
  int dim() const { return static_cast<int>(impl().shape.size()); }
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  int64_t offset() const { return impl().offset; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string shape_str() const;

  // --- raw data (CPU or device pointer; contiguous tensors only for typed access) --------
  void* raw_data() const;
  template <typename T>
  T* data() const;
  template <typename T>
  std::vector<T> to_vector() const;  // copies to host, any layout
  double item() const;               // one-element tensors

  // --- layout and placement (differentiable unless noted) ------------------------------
  Tensor contiguous() const;
  Tensor reshape(const Shape& shape) const;  // -1 infers one dimension
  Tensor transpose(int d0, int d1) const;
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor clone() const;
  // Shares storage, no autograd history (not differentiable).
  Tensor detach() const;
  // Copies src's values into this tensor's storage in place (shapes must match; no autograd).
  void copy_(const Tensor& src);
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // --- autograd -------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true);
  Tensor grad() const;  // undefined when none yet
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient (next backward writes a fresh one)
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Runs the backward pass from this scalar (or with `grad_output` of the same shape).
  void backward(const Tensor& grad_output = Tensor()) const;
  // Called once per backward pass when this leaf's gradient is final.
  void register_grad_ready_hook(GradReadyHook hook);

  TensorImpl& impl() const {
    TRIDENT_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);

// Disables recording of autograd history in its scope (per thread), as torch.no_grad().
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
  static bool grad_enabled();

 private:
  bool prev_;
};

// Copies between any two devices (host <-> device through the CUDA backend).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// Template definitions.
template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  TRIDENT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
                "from_vector: ", values.size(), " values do not fill shape ",
                shape_to_string(shape));
  Tensor t = empty(shape, dtype_of<T>::value, device);
  copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), values.size() * sizeof(T));
  return t;
}

template <typename T>
T* Tensor::data() const {
  TRIDENT_CHECK(dtype_of<T>::value == dtype(), "data<", dtype_name(dtype_of<T>::value), ">() on a ",
                dtype_name(dtype()), " tensor");
  return static_cast<T*>(raw_data());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = contiguous().to(Device::cpu());
  if (c.dtype() != dtype_of<T>::value) c = c.to(dtype_of<T>::value);
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace trident
