// Fused multi-tensor optimizer updates on the GPU (fp32 master weights and state), same math
// and operation order as kernels/cpu/optimizer.hpp (torch.optim single-tensor path). Every
// tensor of a parameter set goes in ONE launch: the tensors are listed in a table in device
// memory (OptimizerEntry), written once per parameter set (optimizer_table_upload) and reused by
// every step while the set does not change, so the launch's arguments are the same at every
// step and a CUDA graph replays it. Each tensor is cut into chunks of kOptimizerChunk elements;
// one block updates one chunk. The gradient is multiplied by `grad_scale` (the clip factor, in
// f32) as the update reads it, which is bitwise what scaling the f32 gradient first gives.
#pragma once
#include "trident/kernels/cuda/common.hpp"
#include "trident/kernels/cuda/train_step.hpp"

namespace trident::kernels::cuda {

inline constexpr int64_t kOptimizerChunk = 16384;  // elements per block (a multiple of 4)

// One tensor of a multi-tensor update. AdamW: state1 = exp_avg, state2 = exp_avg_sq. SGD:
// state1 = momentum buffer (null when momentum == 0), state2 unused, first_step says whether
// state1 is being initialised. first_chunk is set by optimizer_table_chunks().
struct OptimizerEntry {
  float* param = nullptr;
  const float* grad = nullptr;
  float* state1 = nullptr;
  float* state2 = nullptr;
  int64_t n = 0;
  int64_t first_chunk = 0;
  float weight_decay = 0;
  int32_t first_step = 0;
};

// Sets entries[i].first_chunk (host array); returns the chunks of the table (the launch's
// blocks; 0 when every tensor is empty).
int64_t optimizer_table_chunks(OptimizerEntry* entries, int count);
// Copies `count` host entries into `table` (device), queued on the stream (pageable source:
// staged at once). Throws when the stream is being captured into a CUDA graph (the table must
// be written before the capture: the set changed in the middle of graph use).
void optimizer_table_upload(OptimizerEntry* table, const OptimizerEntry* entries, int count,
                            cudaStream_t stream);

// AdamW with decoupled weight decay (each tensor's own); step >= 1 is the 1-based step count.
void adamw_update_table(const OptimizerEntry* table, int count, int64_t chunks, float lr,
                        float beta1, float beta2, float eps, int64_t step, float grad_scale,
                        cudaStream_t stream);
// SGD with momentum/dampening/Nesterov/weight decay.
void sgd_update_table(const OptimizerEntry* table, int count, int64_t chunks, float lr,
                      float momentum, float dampening, bool nesterov, float grad_scale,
                      cudaStream_t stream);
// The same updates with lr, the AdamW step count, the clip factor (as grad_scale) and the skip
// decision read from `scalars` (device memory, train_step.hpp) when the kernel runs; a skipped
// step leaves everything as is.
void adamw_update_table(const OptimizerEntry* table, int count, int64_t chunks, float beta1,
                        float beta2, float eps, const StepScalars* scalars, cudaStream_t stream);
void sgd_update_table(const OptimizerEntry* table, int count, int64_t chunks, float momentum,
                      float dampening, bool nesterov, const StepScalars* scalars,
                      cudaStream_t stream);
// One tensor, its entry passed by value (no table).
void adamw_update_one(const OptimizerEntry& tensor, float lr, float beta1, float beta2, float eps,
                      int64_t step, float grad_scale, cudaStream_t stream);
void sgd_update_one(const OptimizerEntry& tensor, float lr, float momentum, float dampening,
                    bool nesterov, float grad_scale, cudaStream_t stream);

}  // namespace trident::kernels::cuda
