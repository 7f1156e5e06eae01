// Fused multi-tensor optimizer updates on the GPU (fp32 master weights and state), same math
// and operation order as kernels/cpu/optimizer.hpp (torch.optim single-tensor path). Pointer
// and size arrays are host arrays of `count` entries; one launch covers up to 32 tensors.
#pragma once
#include "trident/kernels/cuda/common.hpp"
#include "trident/kernels/cuda/train_step.hpp"

namespace trident::kernels::cuda {

// AdamW with decoupled weight decay; step >= 1 is the 1-based step count.
void adamw_update_multi(int count, float* const* params, const float* const* grads, float* const* m,
                        float* const* v, const int64_t* ns, float lr, float beta1, float beta2,
                        float eps, float weight_decay, int64_t step, cudaStream_t stream);
// SGD with momentum/dampening/Nesterov/weight decay; bufs[i] may be null when momentum == 0;
// first_steps[i] says whether tensor i's momentum buffer is being initialised.
void sgd_update_multi(int count, float* const* params, const float* const* grads,
                      float* const* bufs, const int64_t* ns, const bool* first_steps, float lr,
                      float momentum, float dampening, float weight_decay, bool nesterov,
                      cudaStream_t stream);
// The same updates with lr, the AdamW step count and the skip decision read from `scalars`
// (device memory, train_step.hpp) when the kernels run; a skipped step leaves everything as is.
void adamw_update_multi(int count, float* const* params, const float* const* grads, float* const* m,
                        float* const* v, const int64_t* ns, float beta1, float beta2, float eps,
                        float weight_decay, const StepScalars* scalars, cudaStream_t stream);
void sgd_update_multi(int count, float* const* params, const float* const* grads,
                      float* const* bufs, const int64_t* ns, const bool* first_steps,
                      float momentum, float dampening, float weight_decay, bool nesterov,
                      const StepScalars* scalars, cudaStream_t stream);

}  // namespace trident::kernels::cuda
