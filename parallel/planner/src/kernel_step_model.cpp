// Kernel-level cost model of one GPT training step (see kernel_step_model.hpp).
#include "trident/planner/kernel_step_model.hpp"

#include <algorithm>

namespace trident::planner {

namespace {

// Efficiencies (fractions of the datasheet peak). Chosen once from the published figures named
// here, never fitted to reach an MFU target:
// - cuBLAS(Lt) bf16 GEMMs at GPT-2 124M shapes (M = B T = 8192, N, K in 768 .. 3072, and the
//   50257-wide head): 0.65, inside the 60-75% of peak that cuBLAS reaches on H100 for GEMMs of
//   this size, the range issue 16 states; not re-measured here.
constexpr double kGemm = 0.65;
// - FlashAttention-2 on H100, bf16: 35% of peak in the forward, as the FlashAttention-3 paper
//   (Shah et al. 2024, arXiv 2407.08608) reports for FA2 on H100; the backward at 0.30, keeping
//   the forward/backward ratio of the FlashAttention-2 paper's own A100 figures (Dao 2023,
//   arXiv 2307.08691: forward up to 73% of peak, backward lower).
constexpr double kFlashFwd = 0.35, kFlashBwd = 0.30;
// - Our fp32 CUDA-core attention (32 x 32 tiles, one lane per column, exp per score): 0.25 of
//   the fp32 CUDA-core peak. No published measurement applies to this kernel: an assumption,
//   to be replaced by a measurement on a GPU.
constexpr double kFp32Attention = 0.25;
// - Memory-bound kernels: 0.80 of HBM bandwidth when vectorised (128-bit loads), as llm.c's
//   hand-written CUDA kernels report (70-85%); 0.60 for the current one-thread-per-element
//   scalar kernels (an assumption below that range).
constexpr double kMemoryPlanned = 0.80, kMemoryCurrent = 0.60;
// - Element-wise arithmetic on CUDA cores (exp, tanh, rsqrt): 0.5 of the fp32 peak; these
//   kernels are memory-bound at any value above ~0.05, so it does not move the result.
constexpr double kElementwiseCompute = 0.5;

}  // namespace

const char* engine_name(Engine e) {
  return e == Engine::TensorCore ? "tensor" : "cuda-core";
}

const char* implementation_name(Implementation i) {
  return i == Implementation::Current ? "current" : "planned";
}

// NVIDIA H100 / H200 datasheets (SXM): bf16 dense 989 TFLOP/s, fp32 (non-tensor) 67 TFLOP/s;
// HBM3 3.35 TB/s (H100), HBM3e 4.8 TB/s (H200). Launch: 3 us between dependent kernels, the
// layout planner's h100 preset.
GpuPeaks GpuPeaks::h100_sxm() {
  return {"H100 SXM", 989e12, 67e12, 3.35e12, 3e-6};
}
GpuPeaks GpuPeaks::h200() {
  return {"H200", 989e12, 67e12, 4.8e12, 3e-6};
}

double StepKernel::seconds(const GpuPeaks& g) const {
  const double peak = engine == Engine::TensorCore ? g.tensor_bf16_flops : g.cuda_fp32_flops;
  const double compute = flops / (peak * compute_efficiency);
  const double memory = bytes / (g.bandwidth * memory_efficiency);
  return std::max(compute, memory) + static_cast<double>(launches) * g.launch_s;
}

bool StepKernel::compute_bound(const GpuPeaks& g) const {
  const double peak = engine == Engine::TensorCore ? g.tensor_bf16_flops : g.cuda_fp32_flops;
  return flops / (peak * compute_efficiency) >= bytes / (g.bandwidth * memory_efficiency);
}

std::vector<StepKernel> step_kernels(const ModelShape& model, int64_t B, int64_t T,
                                     Implementation impl) {
  const bool planned = impl == Implementation::Planned;
  const double L = static_cast<double>(model.layers), C = static_cast<double>(model.width),
               V = static_cast<double>(model.vocab), H = static_cast<double>(model.heads),
               Bd = static_cast<double>(B), Td = static_cast<double>(T), R = Bd * Td;
  const int64_t Li = model.layers;
  const double A = 2;  // bf16 activations and working weights
  const double N = static_cast<double>(model.num_parameters());
  const int64_t tensors = 12 * Li + 4;  // wte, wpe, 12 per block, the final LayerNorm's two
  const double mem = planned ? kMemoryPlanned : kMemoryCurrent;
  std::vector<StepKernel> k;
  auto add = [&](const char* family, std::string name, const char* phase, int64_t launches,
                 double flops, double bytes, Engine e = Engine::CudaCore,
                 double ce = kElementwiseCompute, double me = -1, bool matmul = false) {
    k.push_back(
        {family, std::move(name), phase, launches, flops, bytes, e, ce, me > 0 ? me : mem, matmul});
  };
  const double act = R * C * A;  // one (B, T, C) bf16 activation

  // --- forward ---
  if (!planned)  // planned: the optimizer writes the bf16 copy
    add("casts + grad accumulate", "cast weights f32 -> bf16", "forward", tensors, 0, 6 * N);
  // Looked up and summed in f32 (the embedding gradients scatter-add in f32), then cast once.
  add("embedding", "embedding fwd (f32 gathers, token + position add, cast to bf16)", "forward", 4,
      R * C, 4 * (2 * R * C + 2 * Td * C) + 4 * 3 * R * C + 6 * R * C);
  // Linear layers per block: qkv C -> 3C, proj C -> C, fc C -> 4C (+ GELU, aux written), out
  // 4C -> C; then the tied LM head C -> V without bias.
  const double layer_gemm_flops = 2 * R * (3 * C * C + C * C + 4 * C * C + 4 * C * C);
  const double head_flops = 2 * R * V * C;
  const double fwd_gemm_bytes =
      L * A *
          ((R * C + 3 * C * C + 3 * R * C) + (R * C + C * C + R * C) +
           (R * C + 4 * C * C + 8 * R * C) + (4 * R * C + 4 * C * C + R * C)) +
      A * (R * C + V * C + R * V);
  add("matmul", "matmul fwd (cuBLASLt, bias / GELU epilogues)", "forward", 4 * Li + 1,
      L * layer_gemm_flops + head_flops, fwd_gemm_bytes, Engine::TensorCore, kGemm, kMemoryPlanned,
      true);
  const double attn_fwd_flops = L * 2 * Bd * Td * Td * C;  // causal: half of QK^T and PV
  const double attn_fwd_bytes = L * (4 * act + 4 * Bd * H * Td);
  if (planned) {
    add("attention", "attention fwd (FA2-style, bf16 tensor cores)", "forward", Li, attn_fwd_flops,
        attn_fwd_bytes, Engine::TensorCore, kFlashFwd, kMemoryPlanned);
    add("layernorm + residual", "residual add + layernorm fwd (fused)", "forward", 2 * Li + 1,
        (2 * L + 1) * 9 * R * C, (2 * L + 1) * (4 * act + 8 * R));
    add("cross-entropy", "fused classifier (cross-entropy fwd + bwd, logits -> dlogits in place)",
        "forward", 2, 10 * R * V, 2 * R * V * A + 8 * R);
  } else {
    add("attention", "attention fwd (fp32 CUDA-core tiles)", "forward", Li, attn_fwd_flops,
        attn_fwd_bytes, Engine::CudaCore, kFp32Attention, kMemoryPlanned);
    add("layernorm + residual", "add fwd (residuals)", "forward", 2 * Li, 2 * L * R * C,
        2 * L * 3 * act);
    add("layernorm + residual", "layernorm fwd", "forward", 2 * Li + 1, (2 * L + 1) * 8 * R * C,
        (2 * L + 1) * (2 * act + 8 * R));
    add("cross-entropy", "cross-entropy fwd (+ mean)", "forward", 2, 6 * R * V, R * V * A + 8 * R);
  }

  // --- backward ---
  if (!planned) add("cross-entropy", "cross-entropy bwd", "backward", 1, 4 * R * V, 2 * R * V * A);
  const double bwd_gemm_bytes = fwd_gemm_bytes - L * A * 4 * R * C;  // no GELU aux written
  add("matmul", "matmul bwd dX (cuBLASLt)", "backward", 4 * Li + 1,
      L * layer_gemm_flops + head_flops, bwd_gemm_bytes, Engine::TensorCore, kGemm, kMemoryPlanned,
      true);
  add("matmul", "matmul bwd dW (cuBLASLt, bias-grad epilogue)", "backward", 4 * Li + 1,
      L * layer_gemm_flops + head_flops, bwd_gemm_bytes, Engine::TensorCore, kGemm, kMemoryPlanned,
      true);
  add("gelu", "gelu bwd", "backward", Li, L * 30 * 4 * R * C, L * 3 * 4 * act);
  if (planned) {
    add("attention", "attention bwd (FA2-style: dO.O, then one pass; S recomputed once)",
        "backward", 2 * Li, L * 5 * Bd * Td * Td * C, L * (10 * act + 4 * Bd * H * Td),
        Engine::TensorCore, kFlashBwd, kMemoryPlanned);
    add("layernorm + residual", "layernorm bwd + residual-gradient add (fused)", "backward",
        2 * Li + 1, (2 * L + 1) * 12 * R * C, (2 * L + 1) * (4 * act + 8 * R));
  } else {
    // D = dO.O, then a key-tile kernel (S, P, dP recomputed; dV, dK) and a query-tile kernel
    // (S, P, dP recomputed again; dQ): 7 causal T x T x hs products against FA2's 5.
    add("attention", "attention bwd (fp32 CUDA-core, S and dP recomputed twice)", "backward",
        3 * Li, L * 7 * Bd * Td * Td * C, L * (13 * act + 8 * Bd * H * Td), Engine::CudaCore,
        kFp32Attention, kMemoryPlanned);
    add("layernorm + residual", "layernorm bwd (row pass, column-sum chunks, finalize)", "backward",
        3 * (2 * Li + 1), (2 * L + 1) * 10 * R * C, (2 * L + 1) * (5 * act + 8 * R));
    add("layernorm + residual", "add bwd (residual-gradient accumulation)", "backward", 2 * Li,
        2 * L * R * C, 2 * L * 3 * act);
  }
  // Radix sort of the ids (CUB, ~4 launches), zeroing the f32 table gradient, one block per
  // run of equal ids; for both tables; then the tied token table's two gradients summed.
  const double emb_bwd_bytes = 4 * V * C + 8 * 8 * R + act + 4 * Td * C + 8 * 8 * R + act;
  add("embedding", "embedding bwd (sorted, deterministic) + tied-weight add", "backward", 13, V * C,
      emb_bwd_bytes + 12 * V * C);
  add("casts + grad accumulate", "weight-grad cast bf16 -> f32 + accumulate", "backward",
      2 * tensors, N, 18 * N);

  // --- optimizer (f32 master weights, gradients, m, v) ---
  if (planned) {
    add("optimizer", "zero grads (one memset of the contiguous buffer)", "optimizer", 1, 0, 4 * N);
    add("optimizer", "grad norm (multi-tensor sum of squares)", "optimizer", 2, 2 * N, 4 * N);
    add("optimizer", "AdamW (one multi-tensor launch: clip scale, update, bf16 copy)", "optimizer",
        1, 16 * N, 30 * N);
  } else {
    add("optimizer", "zero grads (per tensor)", "optimizer", tensors, 0, 4 * N);
    add("optimizer", "grad norm (per-tensor sum of squares + total)", "optimizer", tensors + 1,
        2 * N, 4 * N);
    add("optimizer", "clip scale (per tensor)", "optimizer", tensors, N, 8 * N);
    add("optimizer", "AdamW (multi-tensor, 32 tensors a launch)", "optimizer", (tensors + 31) / 32,
        15 * N, 28 * N);
  }
  return k;
}

StepPrediction predict_step(const std::vector<StepKernel>& kernels, const ModelShape& model,
                            int64_t B, int64_t T, const GpuPeaks& gpu) {
  StepPrediction p;
  for (const auto& k : kernels) p.seconds += k.seconds(gpu);
  p.model_flops = model.flops_per_token(T) * static_cast<double>(B * T);
  p.mfu = p.model_flops / (p.seconds * gpu.tensor_bf16_flops);
  return p;
}

std::vector<std::string> efficiency_sources() {
  return {
      "cuBLASLt bf16 GEMMs: 0.65 of 989 TFLOP/s (cuBLAS on H100 at GPT-2 124M shapes, the 60-75% "
      "range issue 16 cites; not re-measured)",
      "FA2-style bf16 attention: forward 0.35, backward 0.30 of 989 TFLOP/s (FA2 on H100 at ~35%, "
      "FlashAttention-3 paper, arXiv 2407.08608; backward/forward ratio from the "
      "FlashAttention-2 paper, arXiv 2307.08691)",
      "fp32 CUDA-core attention (current): 0.25 of 67 TFLOP/s (assumption: no published "
      "measurement of this kernel)",
      "memory-bound kernels: 0.80 of HBM bandwidth vectorised (llm.c's CUDA kernels, 70-85%), "
      "0.60 for the current scalar kernels (assumption)",
      "launch: 3 us per kernel (the planner's h100 preset); peaks: NVIDIA H100 SXM / H200 "
      "datasheets (bf16 dense 989, fp32 67 TFLOP/s; 3.35 / 4.8 TB/s)",
      "bytes: every operand read once and every result written once (L2 re-reads free); bf16 "
      "activations and working weights, f32 master weights, gradients and AdamW m, v",
      "MFU: (6 N + 12 L C T) FLOPs per token (N without the position table, full T x T "
      "attention as nanoGPT / PaLM count it) / (step time x 989 TFLOP/s)",
  };
}

}  // namespace trident::planner
