// Fused optimizer updates, one parameter tensor per call, same math as torch.optim. The gradient
// is read as grad * grad_scale (f32; the clip factor folded into the update: bitwise what
// scaling the gradient first and updating with it gives).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

// AdamW (decoupled weight decay, torch.optim.AdamW): step >= 1 is the 1-based step count.
// param -= lr * wd * param; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps).
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  float grad_scale = 1.0f);

// SGD as torch.optim.SGD: g = grad + wd * param; if momentum != 0:
// buf = first_step ? g : momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum*buf :
// buf. param -= lr * g. `buf` may be null when momentum == 0.
void sgd_update(float* param, const float* grad, float* buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step,
                float grad_scale = 1.0f);

}  // namespace trident::kernels::cpu
