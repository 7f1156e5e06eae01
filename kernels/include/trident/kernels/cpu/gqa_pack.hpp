// Grouped-query attention's input: q (N, H * D), k and v (N, Hkv * D), H % Hkv == 0, rows
// contiguous -> qkv (N, 3 * H * D), the fused layout attention reads (kernels/cpu/attention.hpp):
// each row [q | k | v], query head h at columns h*D of each part, and k and v heads repeated:
// head h of the k and v parts is kv head h / (H / Hkv) (Hugging Face's repeat_kv order).
#pragma once
#include <cstdint>

namespace trident::kernels::cpu {

template <typename T>
void gqa_pack_forward(T* qkv, const T* q, const T* k, const T* v, int64_t N, int64_t H, int64_t Hkv,
                      int64_t D);
// dq = the q part of dqkv; dk and dv sum the H / Hkv repeated heads of each kv head
// (overwrites all three).
template <typename T>
void gqa_pack_backward(T* dq, T* dk, T* dv, const T* dqkv, int64_t N, int64_t H, int64_t Hkv,
                       int64_t D);

}  // namespace trident::kernels::cpu
