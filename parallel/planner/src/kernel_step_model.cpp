// Kernel-level cost model of one GPT training step (see kernel_step_model.hpp).
#include "trident/planner/kernel_step_model.hpp"

#include <algorithm>

namespace trident::planner {

namespace {

// Efficiencies (fractions of the datasheet peak). Chosen once from the published figures named
// here, never fitted to reach an MFU target:
// - cuBLAS(Lt) bf16 GEMMs at GPT-2 124M shapes (M = B T = 8192, N, K in 768 .. 3072, and the
//   50304-wide padded head): 0.65, inside the 60-75% of peak that cuBLAS reaches on H100 for GEMMs
//   of this size, the range issue 16 states; not re-measured here.
constexpr double kGemm = 0.65;
// - FlashAttention-2 on H100, bf16: 35% of peak in the forward, as the FlashAttention-3 paper
//   (Shah et al. 2024, arXiv 2407.08608) reports for FA2 on H100; the backward at 0.30, keeping
//   the forward/backward ratio of the FlashAttention-2 paper's own A100 figures (Dao 2023,
//   arXiv 2307.08691: forward up to 73% of peak, backward lower).
constexpr double kFlashFwd = 0.35, kFlashBwd = 0.30;
// - Our bf16 tensor-core attention as it is (attention_wmma.cu: nvcuda::wmma, softmax and row
//   scaling through shared memory, dQ by fp32 atomics): 0.20 of the bf16 peak forward, 0.15
//   backward, the low ends of the estimate in kernels/cuda/NOTES.md (wmma compiles to mma.sync,
//   which the FlashAttention-3 paper puts at about 2/3 of Hopper's peak, less the SIMT softmax
//   work per tile). No published measurement of this kernel: an assumption, to be replaced by
//   bench/gpu/run_on_device.sh's measurement.
constexpr double kWmmaFwd = 0.20, kWmmaBwd = 0.15;
// - Memory-bound kernels: 0.80 of HBM bandwidth when vectorised (128-bit loads), as llm.c's
//   hand-written CUDA kernels report (70-85%); 0.60 for one-thread-per-element scalar kernels
//   (an assumption below that range). Vectorised now (kernels/cuda/vec.cuh): layer norm and the
//   fused residual + layer norm, GELU, dense adds, scale, axpy, f32 <-> bf16 casts, AdamW;
//   still scalar: cross entropy, embedding, reductions (gradient norm), bias.
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
  // The LM head and the classifier run over the vocabulary padded to a multiple of 128 (GPT-2's
  // 50257 -> 50304, trident-train's default on CUDA); MFU still counts the unpadded model.
  const double L = static_cast<double>(model.layers), C = static_cast<double>(model.width),
               V = static_cast<double>((model.vocab + 127) / 128 * 128),
               H = static_cast<double>(model.heads), Bd = static_cast<double>(B),
               Td = static_cast<double>(T), R = Bd * Td;
  const int64_t Li = model.layers;
  const double A = 2;  // bf16 activations and working weights
  const double N = static_cast<double>(model.num_parameters());
  const int64_t tensors = 12 * Li + 4;  // wte, wpe, 12 per block, the final LayerNorm's two
  const double mem = planned ? kMemoryPlanned : kMemoryCurrent;  // kernels not listed above
  const double vec = kMemoryPlanned;  // the vectorised kernels, current and planned
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
    add("casts + grad accumulate", "cast weights f32 -> bf16", "forward", tensors, 0, 6 * N,
        Engine::CudaCore, kElementwiseCompute, vec);
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
    // As the kernels are: tensor-core FA2 (wmma) writing its output twice (out and the saved
    // copy backward's D = dO.O reads); h = x + attn and ln2(h) fused, ln1 and ln_f plain, the
    // block's output add; the fused classifier (one online pass, gradient written in place).
    add("attention", "attention fwd (bf16 wmma FA2, output written twice)", "forward", Li,
        attn_fwd_flops, attn_fwd_bytes + L * act, Engine::TensorCore, kWmmaFwd, kMemoryPlanned);
    add("layernorm + residual", "residual add + layernorm fwd (fused, ln2)", "forward", Li,
        L * 9 * R * C, L * (4 * act + 8 * R), Engine::CudaCore, kElementwiseCompute, vec);
    add("layernorm + residual", "layernorm fwd (ln1, ln_f)", "forward", Li + 1, (L + 1) * 8 * R * C,
        (L + 1) * (2 * act + 8 * R), Engine::CudaCore, kElementwiseCompute, vec);
    add("layernorm + residual", "add fwd (block output residual)", "forward", Li, L * R * C,
        L * 3 * act, Engine::CudaCore, kElementwiseCompute, vec);
    add("cross-entropy", "fused classifier (scalar loads, gradient written in place)", "forward", 2,
        10 * R * V, 2 * R * V * A + 8 * R);
  }

  // --- backward ---
  const double bwd_gemm_bytes = fwd_gemm_bytes - L * A * 4 * R * C;  // no GELU aux written
  add("matmul", "matmul bwd dX (cuBLASLt)", "backward", 4 * Li + 1,
      L * layer_gemm_flops + head_flops, bwd_gemm_bytes, Engine::TensorCore, kGemm, kMemoryPlanned,
      true);
  add("matmul", "matmul bwd dW (cuBLASLt, bias-grad epilogue)", "backward", 4 * Li + 1,
      L * layer_gemm_flops + head_flops, bwd_gemm_bytes, Engine::TensorCore, kGemm, kMemoryPlanned,
      true);
  add("gelu", "gelu bwd", "backward", Li, L * 30 * 4 * R * C, L * 3 * 4 * act, Engine::CudaCore,
      kElementwiseCompute, vec);
  if (planned) {
    add("attention", "attention bwd (FA2-style: dO.O, then one pass; S recomputed once)",
        "backward", 2 * Li, L * 5 * Bd * Td * Td * C, L * (10 * act + 4 * Bd * H * Td),
        Engine::TensorCore, kFlashBwd, kMemoryPlanned);
    add("layernorm + residual", "layernorm bwd + residual-gradient add (fused)", "backward",
        2 * Li + 1, (2 * L + 1) * 12 * R * C, (2 * L + 1) * (4 * act + 8 * R));
  } else {
    // D = dO.O (SIMT), a memset of the fp32 dQ scratch, one block per key tile (5 tile
    // products; dQ added by fp32 atomics), dQ converted: 4 launches a layer.
    add("attention", "attention bwd (bf16 wmma FA2, dQ by fp32 atomics)", "backward", 4 * Li,
        L * 5 * Bd * Td * Td * C, L * (10 * act + 4 * Bd * H * Td + 3 * 4 * R * C),
        Engine::TensorCore, kWmmaBwd, kMemoryPlanned);
    // ln2's backward adds h's gradient in place (dout, residual, dresidual read, dinp written,
    // then the column sums); ln1 / ln_f plain; x's two gradients summed by autograd (one add).
    add("layernorm + residual", "residual + layernorm bwd (fused, in place, ln2)", "backward",
        3 * Li, L * 12 * R * C, L * (6 * act + 8 * R), Engine::CudaCore, kElementwiseCompute, vec);
    add("layernorm + residual", "layernorm bwd (ln1, ln_f; row pass, column sums)", "backward",
        3 * (Li + 1), (L + 1) * 10 * R * C, (L + 1) * (5 * act + 8 * R), Engine::CudaCore,
        kElementwiseCompute, vec);
    add("layernorm + residual", "add bwd (x's two gradients, autograd)", "backward", Li, L * R * C,
        L * 3 * act, Engine::CudaCore, kElementwiseCompute, vec);
  }
  // Radix sort of the ids (CUB, ~4 launches), zeroing the f32 table gradient, one block per
  // run of equal ids; for both tables; then the tied token table's two gradients summed.
  const double emb_bwd_bytes = 4 * V * C + 8 * 8 * R + act + 4 * Td * C + 8 * 8 * R + act;
  add("embedding", "embedding bwd (sorted, deterministic) + tied-weight add", "backward", 13, V * C,
      emb_bwd_bytes + 12 * V * C);
  add("casts + grad accumulate", "weight-grad cast bf16 -> f32 + accumulate", "backward",
      2 * tensors, N, 18 * N, Engine::CudaCore, kElementwiseCompute, vec);

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
    add("optimizer", "clip scale (per tensor)", "optimizer", tensors, N, 8 * N, Engine::CudaCore,
        kElementwiseCompute, vec);
    add("optimizer", "AdamW (multi-tensor, 32 tensors a launch)", "optimizer", (tensors + 31) / 32,
        15 * N, 28 * N, Engine::CudaCore, kElementwiseCompute, vec);
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
      "bf16 wmma attention (current): forward 0.20, backward 0.15 of 989 TFLOP/s (assumption: "
      "the low end of kernels/cuda/NOTES.md's estimate; no published measurement of this kernel)",
      "memory-bound kernels: 0.80 of HBM bandwidth vectorised (llm.c's CUDA kernels, 70-85%; "
      "current: layer norm, fused residual + layer norm, GELU, adds, casts, AdamW), 0.60 for "
      "scalar kernels (assumption; current: cross entropy, embedding, norm reductions)",
      "vocabulary: head GEMMs and the classifier over the padded 50304 columns; MFU counts the "
      "unpadded model",
      "launch: 3 us per kernel (the planner's h100 preset); peaks: NVIDIA H100 SXM / H200 "
      "datasheets (bf16 dense 989, fp32 67 TFLOP/s; 3.35 / 4.8 TB/s)",
      "bytes: every operand read once and every result written once (L2 re-reads free); bf16 "
      "activations and working weights, f32 master weights, gradients and AdamW m, v",
      "MFU: (6 N + 12 L C T) FLOPs per token (N without the position table, full T x T "
      "attention as nanoGPT / PaLM count it) / (step time x 989 TFLOP/s)",
  };
}

}  // namespace trident::planner
