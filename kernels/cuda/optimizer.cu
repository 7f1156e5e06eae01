// Multi-tensor AdamW and SGD in one launch (PyTorch's multi_tensor_apply, with the tensor list
// in device memory instead of the kernel's parameter block, so any number of tensors fits one
// launch): block b updates chunk b of the table, i.e. elements [(b - e.first_chunk) * kChunk,
// + kChunk) of the entry e whose chunks hold b (a binary search over the entries' first
// chunks). Per element, the arithmetic is the CPU's, with g = grad * grad_scale (f32):
// AdamW: p = p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps) with
//        m = m + (1 - b1)(g - m), v = b2 v + (1 - b2) g^2, bc_i = 1 - b_i^step (double).
// SGD:   g += wd p; buf = first ? g : mu buf + (1 - dampening) g; g = nesterov ? g + mu buf : buf;
//        p -= lr g.
// The StepScalars variants read lr, the AdamW step count, the clip factor and the skip decision
// from device memory (train_step.hpp), so the same launch is right at every step (a CUDA graph
// replays it); each block derives the AdamW constants with the host's double arithmetic. A
// tensor whose buffers are 16-byte aligned (any the caching allocator hands out) is updated 4
// floats per access (vec.cuh), with a scalar tail; others element by element.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "trident/kernels/cuda/optimizer.hpp"
#include "trident/kernels/cuda/train_step.hpp"
#include "vec.cuh"

namespace trident::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kOptimizerChunk;
static_assert(kChunk % 4 == 0, "a chunk keeps 16-byte alignment");

// g * grad_scale rounded to f32 on its own (never contracted into an FMA with what follows), as a
// separate scaling pass would store it. (The emulation's host compiler builds without FMA.)
__device__ __forceinline__ float scaled(float g, float grad_scale) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(g, grad_scale);
#else
  return g * grad_scale;
#endif
}

// The entry block `b` updates (detail::table_entry_of_chunk), or `one` without a table.
__device__ __forceinline__ OptimizerEntry entry_of_block(const OptimizerEntry* table, int count,
                                                         const OptimizerEntry& one, int64_t b) {
  if (table == nullptr) return one;
  return table[detail::table_entry_of_chunk(table, count, b)];
}

// Calls update(i, width) over this block's chunk of `e`: 4 elements at a time when `vec`.
template <typename F>
__device__ __forceinline__ void over_chunk(const OptimizerEntry& e, bool vec, F&& update) {
  const int64_t begin = (int64_t(blockIdx.x) - e.first_chunk) * kChunk;
  const int64_t end = e.n < begin + kChunk ? e.n : begin + kChunk;
  int64_t i = begin;
  if (vec) {
    const int64_t packs = (end - begin) / 4;
    for (int64_t c = threadIdx.x; c < packs; c += blockDim.x)
      update(begin + 4 * c, std::integral_constant<int, 4>());
    i = begin + 4 * packs;
  }
  for (int64_t k = i + threadIdx.x; k < end; k += blockDim.x)
    update(k, std::integral_constant<int, 1>());
}

__global__ void adamw_kernel(const OptimizerEntry* table, int count, OptimizerEntry one, float lr,
                             float beta1, float beta2, float eps, float step_size, float bc2_sqrt,
                             float grad_scale, const StepScalars* sc) {
  if (sc != nullptr) {  // the step's numbers from device memory, as adamw_update_table makes them
    if (sc->skip != 0) return;
    const double b1 = beta1, b2 = beta2, step = static_cast<double>(sc->adam_step);
    lr = sc->lr;
    step_size = static_cast<float>(lr / (1.0 - pow(b1, step)));
    bc2_sqrt = static_cast<float>(sqrt(1.0 - pow(b2, step)));
    grad_scale = sc->clip;
  }
  const OptimizerEntry e = entry_of_block(table, count, one, blockIdx.x);
  float* p = e.param;
  const float* g = e.grad;
  float* m = e.state1;
  float* v = e.state2;
  const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * e.weight_decay);
  const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
  const auto update = [&](int64_t i, auto width) {
    constexpr int K = decltype(width)::value;
    float pk[K], gk[K], mk[K], vk[K];
    detail::load_f<K>(p + i, pk);
    detail::load_f<K>(g + i, gk);
    detail::load_f<K>(m + i, mk);
    detail::load_f<K>(v + i, vk);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      gk[k] = scaled(gk[k], grad_scale);
      mk[k] = mk[k] + one_minus_b1 * (gk[k] - mk[k]);
      vk[k] = beta2 * vk[k] + one_minus_b2 * gk[k] * gk[k];
      const float denom = sqrtf(vk[k]) / bc2_sqrt + eps;
      pk[k] = pk[k] * decay - step_size * (mk[k] / denom);
    }
    detail::store_f<K>(m + i, mk);
    detail::store_f<K>(v + i, vk);
    detail::store_f<K>(p + i, pk);
  };
  over_chunk(
      e,
      detail::aligned16(p) && detail::aligned16(g) && detail::aligned16(m) && detail::aligned16(v),
      update);
}

__global__ void sgd_kernel(const OptimizerEntry* table, int count, OptimizerEntry one, float lr,
                           float momentum, float dampening, bool nesterov, float grad_scale,
                           const StepScalars* sc) {
  if (sc != nullptr) {
    if (sc->skip != 0) return;
    lr = sc->lr;
    grad_scale = sc->clip;
  }
  const OptimizerEntry e = entry_of_block(table, count, one, blockIdx.x);
  float* p = e.param;
  const float* g = e.grad;
  float* buf = e.state1;
  const bool first = e.first_step != 0;
  const float weight_decay = e.weight_decay;
  const float keep = 1.0f - dampening;
  over_chunk(e, false, [&](int64_t i, auto) {
    float gi = scaled(g[i], grad_scale);
    if (weight_decay != 0.0f) gi += weight_decay * p[i];
    if (momentum != 0.0f) {
      const float b = first ? gi : momentum * buf[i] + keep * gi;
      buf[i] = b;
      gi = nesterov ? gi + momentum * b : b;
    }
    p[i] -= lr * gi;
  });
}

int64_t chunks_of(int64_t n) {
  return (n + kChunk - 1) / kChunk;
}

void check_grid(int64_t chunks, const char* who) {
  if (chunks < 0 || chunks > int64_t{0x7FFFFFFF}) {
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(chunks) +
                                " chunks do not fit one launch");
  }
}

struct AdamWConstants {
  float step_size, bc2_sqrt;
};
AdamWConstants adamw_constants(float lr, float beta1, float beta2, int64_t step) {
  if (step < 1) {
    throw std::invalid_argument("adamw_update: step = " + std::to_string(step) +
                                " must be the 1-based step count");
  }
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  return {static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2))};
}

void adamw_launch(const OptimizerEntry* table, int count, const OptimizerEntry& one, int64_t chunks,
                  float lr, float beta1, float beta2, float eps, AdamWConstants c, float grad_scale,
                  const StepScalars* sc, cudaStream_t stream) {
  check_grid(chunks, "adamw_update");
  if (chunks == 0) return;
  TRIDENT_LAUNCH(adamw_kernel, static_cast<unsigned>(chunks), kThreads, 0, stream)
  (table, count, one, lr, beta1, beta2, eps, c.step_size, c.bc2_sqrt, grad_scale, sc);
  detail::check_launch("adamw_kernel");
}

void sgd_launch(const OptimizerEntry* table, int count, const OptimizerEntry& one, int64_t chunks,
                float lr, float momentum, float dampening, bool nesterov, float grad_scale,
                const StepScalars* sc, cudaStream_t stream) {
  check_grid(chunks, "sgd_update");
  if (chunks == 0) return;
  TRIDENT_LAUNCH(sgd_kernel, static_cast<unsigned>(chunks), kThreads, 0, stream)
  (table, count, one, lr, momentum, dampening, nesterov, grad_scale, sc);
  detail::check_launch("sgd_kernel");
}

void check_momentum_buffer(const OptimizerEntry& e, float momentum) {
  if (momentum != 0.0f && e.state1 == nullptr && e.n > 0) {
    throw std::invalid_argument("sgd_update: momentum = " + std::to_string(momentum) +
                                " needs a momentum buffer, got null");
  }
}

}  // namespace

int64_t optimizer_table_chunks(OptimizerEntry* entries, int count) {
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    if (entries[i].n < 0) {
      throw std::invalid_argument("optimizer table: tensor " + std::to_string(i) + " has " +
                                  std::to_string(entries[i].n) + " elements");
    }
    entries[i].first_chunk = total;
    total += chunks_of(entries[i].n);
  }
  return total;
}

void optimizer_table_upload(OptimizerEntry* table, const OptimizerEntry* entries, int count,
                            cudaStream_t stream) {
  if (count <= 0) return;
  detail::upload_table(table, entries, sizeof(OptimizerEntry) * size_t(count),
                       "optimizer_table_upload", "the optimizer's parameter set", stream);
}

void adamw_update_table(const OptimizerEntry* table, int count, int64_t chunks, float lr,
                        float beta1, float beta2, float eps, int64_t step, float grad_scale,
                        cudaStream_t stream) {
  adamw_launch(table, count, OptimizerEntry{}, chunks, lr, beta1, beta2, eps,
               adamw_constants(lr, beta1, beta2, step), grad_scale, nullptr, stream);
}

void adamw_update_table(const OptimizerEntry* table, int count, int64_t chunks, float beta1,
                        float beta2, float eps, const StepScalars* scalars, cudaStream_t stream) {
  adamw_launch(table, count, OptimizerEntry{}, chunks, 0, beta1, beta2, eps, {0, 0}, 1.0f, scalars,
               stream);
}

void sgd_update_table(const OptimizerEntry* table, int count, int64_t chunks, float lr,
                      float momentum, float dampening, bool nesterov, float grad_scale,
                      cudaStream_t stream) {
  sgd_launch(table, count, OptimizerEntry{}, chunks, lr, momentum, dampening, nesterov, grad_scale,
             nullptr, stream);
}

void sgd_update_table(const OptimizerEntry* table, int count, int64_t chunks, float momentum,
                      float dampening, bool nesterov, const StepScalars* scalars,
                      cudaStream_t stream) {
  sgd_launch(table, count, OptimizerEntry{}, chunks, 0, momentum, dampening, nesterov, 1.0f,
             scalars, stream);
}

void adamw_update_one(const OptimizerEntry& tensor, float lr, float beta1, float beta2, float eps,
                      int64_t step, float grad_scale, cudaStream_t stream) {
  OptimizerEntry e = tensor;
  const int64_t chunks = optimizer_table_chunks(&e, 1);
  adamw_launch(nullptr, 1, e, chunks, lr, beta1, beta2, eps,
               adamw_constants(lr, beta1, beta2, step), grad_scale, nullptr, stream);
}

void sgd_update_one(const OptimizerEntry& tensor, float lr, float momentum, float dampening,
                    bool nesterov, float grad_scale, cudaStream_t stream) {
  check_momentum_buffer(tensor, momentum);
  OptimizerEntry e = tensor;
  const int64_t chunks = optimizer_table_chunks(&e, 1);
  sgd_launch(nullptr, 1, e, chunks, lr, momentum, dampening, nesterov, grad_scale, nullptr, stream);
}

}  // namespace trident::kernels::cuda
