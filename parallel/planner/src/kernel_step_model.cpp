// Kernel-level cost model of one GPT training step (see kernel_step_model.hpp).
#include "trident/planner/kernel_step_model.hpp"

#include <algorithm>
#include <vector>

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
//   the fused classifier; still scalar: embedding, reductions (gradient norm), bias.
constexpr double kMemoryPlanned = 0.80, kMemoryCurrent = 0.60;
// - Element-wise arithmetic on CUDA cores (exp, tanh, rsqrt): 0.5 of the fp32 peak; these
//   kernels are memory-bound at any value above ~0.05, so it does not move the result.
constexpr double kElementwiseCompute = 0.5;

// Gradient buckets of the data-parallel reducer at its default 25 MiB (data_parallel.hpp): f32
// gradients in backward order (the last layer's first), a bucket closed once it holds 25 MiB;
// the tied token table in a bucket of its own.
int64_t gradient_buckets(const ModelShape& m, double T) {
  const double C = static_cast<double>(m.width);
  std::vector<double> sizes = {2 * C};  // ln_f
  for (int64_t l = 0; l < m.layers; ++l) {
    for (double n : {C * 4 * C + C, 4 * C * C + 4 * C, 2 * C, C * C + C, 3 * C * C + 3 * C, 2 * C})
      sizes.push_back(n);
  }
  sizes.push_back(T * C);  // wpe; wte, tied, gets a bucket of its own (solo_params)
  const double cap = 25.0 * (1 << 20);
  int64_t buckets = 0;
  double open = 0;
  for (double n : sizes) {
    open += 4 * n;
    if (open >= cap) {
      ++buckets;
      open = 0;
    }
  }
  return buckets + (open > 0 ? 1 : 0) + 1;
}

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
    add("casts + grad accumulate", "cast weights f32 -> bf16 (per tensor, in the linear ops)",
        "forward", tensors, 0, 6 * N, Engine::CudaCore, kElementwiseCompute, vec);
  // Looked up and summed in f32 (the embedding gradients scatter-add in f32), then cast once.
  add("embedding", "embedding fwd (f32 gathers, token + position add, cast to bf16)", "forward", 4,
      R * C, 4 * (2 * R * C + 2 * Td * C) + 4 * 3 * R * C + 6 * R * C);
  // Linear layers per block: qkv C -> 3C, proj C -> C, fc C -> 4C (+ GELU, aux written), out
  // 4C -> C, every bias in the epilogue; then the tied LM head C -> V without bias.
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
    add("attention", "attention fwd (FA2-class, bf16 tensor cores)", "forward", Li, attn_fwd_flops,
        attn_fwd_bytes, Engine::TensorCore, kFlashFwd, kMemoryPlanned);
  } else {
    add("attention", "attention fwd (bf16 wmma FA2, output written once)", "forward", Li,
        attn_fwd_flops, attn_fwd_bytes, Engine::TensorCore, kWmmaFwd, kMemoryPlanned);
  }
  // Every residual add inside a fused residual + layer norm (ln2; ln1 of blocks 1..L-1 takes the
  // previous block's output add; ln_f the last block's); block 0's ln1 has nothing to add.
  add("layernorm + residual", "residual add + layernorm fwd (fused: ln2, ln1, ln_f)", "forward",
      2 * Li, 2 * L * 9 * R * C, 2 * L * (4 * act + 8 * R), Engine::CudaCore, kElementwiseCompute,
      vec);
  add("layernorm + residual", "layernorm fwd (block 0's ln1)", "forward", 1, 8 * R * C,
      2 * act + 8 * R, Engine::CudaCore, kElementwiseCompute, vec);
  add("cross-entropy", "fused classifier (16-byte loads, gradient written in place)", "forward", 2,
      10 * R * V, 2 * R * V * A + 8 * R, Engine::CudaCore, kElementwiseCompute, vec);

  // --- backward ---
  const double bwd_gemm_bytes = fwd_gemm_bytes - L * A * 4 * R * C;  // no GELU aux written
  // mlp.proj's dX GEMM applies GELU's derivative in its epilogue (dGELU), reading the saved
  // pre-activation: no separate GELU backward.
  add("matmul", "matmul bwd dX (cuBLASLt; mlp.proj's with the dGELU epilogue)", "backward",
      4 * Li + 1, L * layer_gemm_flops + head_flops, bwd_gemm_bytes + L * A * 4 * R * C,
      Engine::TensorCore, kGemm, kMemoryPlanned, true);
  // Weight gradients written in f32 straight into the master gradients (beta 1: read and write
  // f32 instead of writing bf16, 6 more bytes an element), biases by the bias-grad epilogue.
  const double gemm_weights = L * 12 * C * C + V * C;
  add("matmul", "matmul bwd dW (cuBLASLt, f32 into the master gradients, bias-grad epilogue)",
      "backward", 4 * Li + 1, L * layer_gemm_flops + head_flops, bwd_gemm_bytes + 6 * gemm_weights,
      Engine::TensorCore, kGemm, kMemoryPlanned, true);
  if (planned) {
    add("attention", "attention bwd (FA2-class: dO.O, then one pass; S recomputed once)",
        "backward", 2 * Li, L * 5 * Bd * Td * Td * C, L * (10 * act + 4 * Bd * H * Td),
        Engine::TensorCore, kFlashBwd, kMemoryPlanned);
  } else {
    // D = dO.O (SIMT, reading the forward's output), a memset of the fp32 dQ scratch, one block
    // per key tile (5 tile products; dQ added by fp32 atomics), dQ converted: 4 launches a layer.
    add("attention", "attention bwd (bf16 wmma FA2, dQ by fp32 atomics)", "backward", 4 * Li,
        L * 5 * Bd * Td * Td * C, L * (10 * act + 4 * Bd * H * Td + 3 * 4 * R * C),
        Engine::TensorCore, kWmmaBwd, kMemoryPlanned);
  }
  // The fused backward adds the residual stream's gradient in place (dout, residual, dresidual
  // read, dinp written, then the column sums); ln_f's has no gradient to add into; block 0's ln1
  // is plain; one add left where autograd sums block 0's input gradients.
  add("layernorm + residual", "residual + layernorm bwd (fused, in place but ln_f)", "backward",
      3 * 2 * Li, 2 * L * 12 * R * C, (2 * L - 1) * (6 * act + 8 * R) + 5 * act + 8 * R,
      Engine::CudaCore, kElementwiseCompute, vec);
  add("layernorm + residual", "layernorm bwd (block 0's ln1) + one autograd add", "backward", 4,
      11 * R * C, 8 * act + 8 * R, Engine::CudaCore, kElementwiseCompute, vec);
  if (!planned) {
    // autograd clones a gradient that two inputs of one node share (the fused residual + layer
    // norm hands the same gradient to the residual and the branch): about 4 a block, 48 for
    // GPT-2 124M, from reading core/src/autograd.cpp (not counted by a launch log).
    add("autograd copies", "gradient copies (a gradient two inputs share is cloned)", "backward",
        4 * Li, 0, 4 * L * 2 * act, Engine::CudaCore, kElementwiseCompute, vec);
  }
  // Radix sort of the ids (CUB, ~4 launches), zeroing the f32 table gradient, one block per
  // run of equal ids; for both tables; then the tied token table's two gradients summed.
  const double emb_bwd_bytes = 4 * V * C + 8 * 8 * R + act + 4 * Td * C + 8 * 8 * R + act;
  add("embedding", "embedding bwd (sorted, deterministic) + tied-weight add", "backward", 13, V * C,
      emb_bwd_bytes + 12 * V * C);
  // Left of the 296 weight-gradient casts: the layer norms' parameters (cast bf16 -> f32 and
  // accumulated), and one small f32 add for each bias gradient the epilogue wrote to scratch.
  const double ln_params = (4 * L + 2) * C, biases = L * 9 * C;
  add("casts + grad accumulate", "layernorm-parameter grad cast + accumulate, bias-grad adds",
      "backward", 2 * (4 * Li + 2) + 4 * Li, ln_params + biases, 18 * ln_params + 12 * biases,
      Engine::CudaCore, kElementwiseCompute, vec);

  // --- optimizer (f32 master weights, gradients, m, v) ---
  if (planned) {
    add("optimizer", "zero grads (one memset of the contiguous buffer)", "optimizer", 1, 0, 4 * N);
  } else {
    add("optimizer", "zero grads (one fill per gradient bucket)", "optimizer",
        gradient_buckets(model, Td), 0, 4 * N);
  }
  add("optimizer", "grad norm (one range per bucket, then the total)", "optimizer", 2, 2 * N,
      4 * N);
  // One launch over a device table of every tensor; the clip factor multiplies the gradient in
  // the update (no separate pass); planned: it also writes the bf16 working copy.
  add("optimizer",
      planned ? "AdamW (one launch: clip folded in, update, bf16 copy)"
              : "AdamW (one launch over every tensor, clip folded in)",
      "optimizer", 1, 16 * N, planned ? 30 * N : 28 * N, Engine::CudaCore, kElementwiseCompute,
      vec);
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
      "FA2-class bf16 attention (planned): forward 0.35, backward 0.30 of 989 TFLOP/s (FA2 on H100 "
      "at ~35%, "
      "FlashAttention-3 paper, arXiv 2407.08608; backward/forward ratio from the "
      "FlashAttention-2 paper, arXiv 2307.08691)",
      "bf16 wmma attention (current): forward 0.20, backward 0.15 of 989 TFLOP/s (assumption: "
      "the low end of kernels/cuda/NOTES.md's estimate; no published measurement of this kernel)",
      "memory-bound kernels: 0.80 of HBM bandwidth vectorised (llm.c's CUDA kernels, 70-85%; "
      "current: layer norm, fused residual + layer norm, fused classifier, adds, casts, AdamW), "
      "0.60 for scalar kernels (assumption; current: embedding, norm reductions)",
      "autograd gradient copies: 48 a step for GPT-2 124M, counted by reading "
      "core/src/autograd.cpp, not by a launch log",
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
