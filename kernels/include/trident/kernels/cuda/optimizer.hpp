// Fused multi-tensor optimizer updates on the GPU (fp32 master weights and state), same math
// and operation order as kernels/cpu/optimizer.hpp (torch.optim single-tensor path). Pointer
// and size arrays are host arrays of `count` entries; one launch covers up to 32 tensors.
#pragma once
#include "trident/kernels/cuda/common.hpp"

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

}  // namespace trident::kernels::cuda
