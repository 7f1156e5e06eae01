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
// - Attention at GPT-2's shape (head size 64, causal, T = 1024), bf16 on an H100 SXM5, from the
//   FlashAttention-3 paper's figures (Shah et al. 2024, arXiv 2407.08608, figures 5 and 6, head
//   dim 64, sequence length 1k; FLOPs counted as here, the causal half only):
//   FlashAttention-2: forward, causal 229 TFLOP/s (0.23 of 989); backward 238 TFLOP/s without
//   the causal mask, and no causal backward figure: scaled by the forward's causal / non-causal
//   ratio at 1k (229 / 306), 178 TFLOP/s (0.18). Our attention (attention_fa2_fwd.cu,
//   attention_fa2_bwd.cu) is FlashAttention-2's algorithm with its instructions - mma.sync
//   m16n8k16 and ldmatrix, the softmax and P / dS in registers, K / V (forward) and Q / dO
//   (backward) double-buffered with cp.async, dQ by fp32 atomics - so it is priced at FA2's
//   published efficiency: an assumption until bench/gpu/run_on_device.sh measures it (its tile
//   shapes and scheduling are ours, not FA2's tuned ones).
//   FlashAttention-3 (wgmma and TMA, Hopper only; the planned kernel): forward causal 265
//   TFLOP/s (0.27); backward 363 without the mask, scaled by its forward's ratio (265 / 392):
//   245 TFLOP/s (0.25).
//   (Until this session the model used 0.35 / 0.30 for FA2, a figure for long sequences and
//   large heads; at GPT-2's head size and length the paper's own bars are lower.)
constexpr double kFa2Fwd = 229.0 / 989.0, kFa2Bwd = 238.0 * (229.0 / 306.0) / 989.0;
constexpr double kFa3Fwd = 265.0 / 989.0, kFa3Bwd = 363.0 * (265.0 / 392.0) / 989.0;
// - Memory-bound kernels: 0.80 of HBM bandwidth when vectorised (128-bit loads), as llm.c's
//   hand-written CUDA kernels report (70-85%); 0.60 for one-thread-per-element scalar kernels
//   (an assumption below that range). Vectorised now (kernels/cuda/vec.cuh): layer norm and the
//   fused residual + layer norm, GELU, dense adds, scale, axpy, f32 <-> bf16 casts, AdamW;
//   the fused classifier; still scalar: embedding, reductions (gradient norm), bias.
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

  // Elements of the parameters read as bf16 working copies: the four weights and biases of every
  // block, the tied token table (the LM head) and the layer norms' gamma and beta.
  const double ln_params = (4 * L + 2) * C;
  const double gemm_params = L * (12 * C * C + 9 * C) + V * C + ln_params;

  // --- forward ---
  if (!planned) {
    // trident::WorkingCopies: every such parameter cast f32 -> bf16 in ONE multi-tensor launch a
    // step (all micro-batches), into buffers allocated once. Planned: the optimizer writes them.
    add("casts + grad accumulate", "bf16 working copies of the parameters (one launch)", "forward",
        1, 0, 6 * gemm_params, Engine::CudaCore, kElementwiseCompute, vec);
  }
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
    add("attention", "attention fwd (FA3-class: wgmma + TMA on Hopper)", "forward", Li,
        attn_fwd_flops, attn_fwd_bytes, Engine::TensorCore, kFa3Fwd, kMemoryPlanned);
  } else {
    add("attention", "attention fwd (FA2: mma.sync, softmax in registers, cp.async K/V)", "forward",
        Li, attn_fwd_flops, attn_fwd_bytes, Engine::TensorCore, kFa2Fwd, kMemoryPlanned);
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
  const double attn_bwd_flops = L * 5 * Bd * Td * Td * C;  // 5 tile products, the causal half
  if (planned) {
    add("attention", "attention bwd (FA3-class: wgmma + TMA on Hopper)", "backward", 2 * Li,
        attn_bwd_flops, L * (10 * act + 4 * Bd * H * Td), Engine::TensorCore, kFa3Bwd,
        kMemoryPlanned);
  } else {
    // D = dO.O (SIMT, reading the forward's output; it also zeroes the fp32 dQ scratch rows it
    // owns), one block per key tile (5 tile products, Q / dO double-buffered with cp.async, dQ
    // added by fp32 atomics), dQ converted: 3 launches a layer.
    add("attention", "attention bwd (FA2: mma.sync, P / dS in registers, dQ by fp32 atomics)",
        "backward", 3 * Li, attn_bwd_flops, L * (10 * act + 4 * Bd * H * Td + 3 * 4 * R * C),
        Engine::TensorCore, kFa2Bwd, kMemoryPlanned);
  }
  // The fused backward adds the residual stream's gradient in place (dout, residual, dresidual
  // read, dinp written, then the column sums); ln_f's has no gradient to add into; block 0's ln1
  // is plain; one add left where autograd sums block 0's input gradients. Autograd hands the
  // residual add's gradient to both inputs without a copy (copy on write).
  add("layernorm + residual", "residual + layernorm bwd (fused, in place but ln_f)", "backward",
      3 * 2 * Li, 2 * L * 12 * R * C, (2 * L - 1) * (6 * act + 8 * R) + 5 * act + 8 * R,
      Engine::CudaCore, kElementwiseCompute, vec);
  add("layernorm + residual", "layernorm bwd (block 0's ln1) + one autograd add", "backward", 4,
      11 * R * C, 8 * act + 8 * R, Engine::CudaCore, kElementwiseCompute, vec);
  // Radix sort of the ids (CUB, ~4 launches) and one block per run of equal ids, for both
  // tables, each run's sum added into the table's existing f32 gradient (the tied head's dW
  // for the token table): no zeroed (V, C) table and no separate add.
  const double emb_bwd_bytes = 2 * (8 * 8 * R + act) + 8 * std::min(R, V) * C + 8 * Td * C;
  add("embedding", "embedding bwd (sorted, deterministic, added into the gradients)", "backward",
      10, R * C, emb_bwd_bytes);
  // The layer norms' bf16 parameter gradients, each added into its f32 master gradient by one
  // convert-and-add launch (Backend::accumulate_converted); the bias gradients the epilogue wrote
  // to scratch, each added into the master gradient. Planned: the layer norms read f32 gamma /
  // beta and write f32 gradients.
  const double biases = L * 9 * C;
  if (!planned) {
    add("casts + grad accumulate", "layernorm-parameter grads added into f32 (convert + add)",
        "backward", 4 * Li + 2, ln_params, 10 * ln_params, Engine::CudaCore, kElementwiseCompute,
        vec);
  }
  add("casts + grad accumulate", "bias-grad adds (one small f32 add per bias)", "backward", 4 * Li,
      biases, 12 * biases, Engine::CudaCore, kElementwiseCompute, vec);

  // Small launches the emulator's launch log counts in a step besides the kernels above (one
  // training step of the GPT under the CUDA emulation, tests/cuda_emu/launch_log.sh): the batch's
  // two host-to-device copies and the loss and norm read-back copies, 3 memsets, the norm's f64
  // zero fill, the classifier's dloss and mean kernels, the loss cast and the step's finish.
  add("optimizer", "step bookkeeping (batch copies, memsets, loss and step-finish kernels)",
      "optimizer", 12, 0, 2 * 4 * R);  // the bytes: the batch's i32 ids and targets

  // --- optimizer (f32 master weights, gradients, m, v) ---
  // The gradient buckets are slices of one allocation: one fill zeroes them all.
  add("optimizer", "zero grads (one fill of the contiguous gradient buffer)", "optimizer", 1, 0,
      4 * N, Engine::CudaCore, kElementwiseCompute, vec);
  add("optimizer", "grad norm (one range per bucket, then the total)", "optimizer", 2, 2 * N,
      4 * N);
  // One launch over a device table of every tensor; the clip factor multiplies the gradient in
  // the update (no separate pass); planned: it also writes the bf16 working copies.
  add("optimizer",
      planned ? "AdamW (one launch: clip folded in, update, bf16 working copies)"
              : "AdamW (one launch over every tensor, clip folded in)",
      "optimizer", 1, 16 * N, 28 * N + (planned ? 2 * gemm_params : 0), Engine::CudaCore,
      kElementwiseCompute, vec);
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
      "attention (head size 64, causal, T 1k, H100 SXM5; FlashAttention-3 paper, arXiv "
      "2407.08608, figs. 5-6): FA2 forward 229 TFLOP/s (0.23), backward 238 non-causal x "
      "229/306 = 178 (0.18), applied to our FA2-algorithm kernels (mma.sync, registers, "
      "cp.async: an assumption until measured); planned FA3-class: 265 (0.27) and 363 x 265/392 "
      "= 245 (0.25)",
      "memory-bound kernels: 0.80 of HBM bandwidth vectorised (llm.c's CUDA kernels, 70-85%; "
      "current: layer norm, fused residual + layer norm, fused classifier, adds, casts, fills, "
      "AdamW), "
      "0.60 for scalar kernels (assumption; current: embedding, norm reductions)",
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
