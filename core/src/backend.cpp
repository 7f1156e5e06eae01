#include "trident/core/backend.hpp"

#include <cstring>

#include "trident/core/error.hpp"
#include "trident/core/tensor.hpp"

namespace trident {

Backend& cpu_backend();  // backend_cpu.cpp
#ifdef TRIDENT_WITH_CUDA
void register_cuda_backend();  // backend_cuda.cpp: installs the backend, allocator and copies
#endif

namespace {
Backend& (*g_cuda_backend)(int) = nullptr;
CopyFn g_device_copy = nullptr;

// Explicit, so that the static library's linker keeps backend_cuda.cpp (no static initialiser).
void ensure_cuda_registered() {
#ifdef TRIDENT_WITH_CUDA
  static const bool once = (register_cuda_backend(), true);
  (void)once;
#endif
}
}  // namespace

void Backend::linear_gelu_forward(DType t, void* out, void* pre, const void* x, const void* w,
                                  const void* bias, int64_t R, int64_t N, int64_t K) {
  linear_forward(t, pre, x, w, bias, R, N, K);
  gelu_forward(t, out, pre, R * N);
}

void Backend::linear_weight_grad_f32(DType, float*, float*, const void*, const void*, int64_t,
                                     int64_t, int64_t, bool, bool) {
  throw Error(str_cat("linear_weight_grad_f32: the ", name(),
                      " backend has no mixed-precision weight gradient"));
}

void Backend::linear_dgelu_backward(DType t, void* dpre, const void* dy, const void* w,
                                    const void* pre, int64_t R, int64_t N, int64_t K) {
  gemm_batched(t, false, false, 1, R, K, N, 1.0, dy, N, 0, w, K, 0, 0.0, dpre, K, 0);
  gelu_backward(t, dpre, pre, dpre, R * K);
}

namespace {
[[noreturn]] void no_device_step(const Backend& b, const char* entry) {
  throw Error(str_cat(entry, ": the ", b.name(),
                      " backend has no device-resident training step (CUDA only)"));
}
}  // namespace

size_t Backend::step_scalars_bytes() const {
  no_device_step(*this, "step_scalars_bytes");
}
void Backend::step_scalars_init(void*, int64_t, int64_t) {
  no_device_step(*this, "step_scalars_init");
}
void Backend::sum_squares_multi_to(DType, double*, const void* const*, const int64_t*, int) {
  no_device_step(*this, "sum_squares_multi_to");
}
void Backend::train_step_loss_sum(const float*, int64_t, double*) {
  no_device_step(*this, "train_step_loss_sum");
}
void Backend::train_step_finish(void*, const float*, int64_t, const double*, int64_t, const double*,
                                float, bool, int64_t, const float*, int64_t, double*, double*,
                                double*, int64_t) {
  no_device_step(*this, "train_step_finish");
}
void Backend::adamw_update_table_step(const void*, int, int64_t, float, float, float, const void*) {
  no_device_step(*this, "adamw_update_table_step");
}
void Backend::sgd_update_table_step(const void*, int, int64_t, float, float, bool, const void*) {
  no_device_step(*this, "sgd_update_table_step");
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  ensure_cuda_registered();
  TRIDENT_CHECK(g_cuda_backend != nullptr, "device ", device.str(),
                " requested but this build of Trident has no CUDA backend "
                "(rebuild with -DTRIDENT_ENABLE_CUDA=ON on a machine with nvcc)");
  return g_cuda_backend(device.index);
}

void register_backend(DeviceType type, Backend& (*get)(int)) {
  if (type == DeviceType::CUDA) g_cuda_backend = get;
}

void register_device_copy(CopyFn fn) {
  g_device_copy = fn;
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  ensure_cuda_registered();
  TRIDENT_CHECK(g_device_copy != nullptr, "copy between ", src_device.str(), " and ",
                dst_device.str(), " needs the CUDA backend, which this build lacks");
  g_device_copy(dst, dst_device, src, src_device, bytes);
}

}  // namespace trident
