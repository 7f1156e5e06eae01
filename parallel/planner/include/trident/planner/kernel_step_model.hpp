// Kernel-level cost model of one single-GPU GPT training step (trident-planner --kernels):
// every kernel family of the forward, backward and optimizer with its launches per step,
// FLOPs and bytes moved, priced on a GPU from datasheet peaks and stated efficiencies:
//   time = max(FLOPs / (peak(engine) x compute efficiency), bytes / (bandwidth x memory
//          efficiency)) + launches x launch overhead
// for two implementations: "current" (the CUDA backend as it is: FlashAttention-2's algorithm
// on mma.sync with cp.async double buffering, every residual add fused with a layer norm, the
// fused vectorised classifier, cuBLASLt GEMMs with bias / GELU / dGELU epilogues writing f32
// weight gradients into the master gradients, the bf16 working copies cast in one launch a step,
// one zero-grad fill, one-launch AdamW with the clip folded in) and "planned" (what remains:
// FA3-class attention, the optimizer writing the working copies, layer norms reading f32 gamma
// and beta). Every number it produces is a PREDICTION, not a measurement.
// Byte counts assume each operand is read once and each result written once (tiles re-read
// from L2 are free), bf16 activations and working weights (2 bytes), f32 master weights,
// gradients and AdamW state (4 bytes). Pure logic; the command line prints it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trident/planner/layout_planner.hpp"

namespace trident::planner {

// Which unit bounds a kernel's arithmetic.
enum class Engine { TensorCore, CudaCore };
const char* engine_name(Engine e);

// Datasheet peaks of one GPU (dense, no sparsity).
struct GpuPeaks {
  std::string name;
  double tensor_bf16_flops = 0;  // FLOP/s
  double cuda_fp32_flops = 0;    // FLOP/s, non-tensor-core fp32
  double bandwidth = 0;          // HBM bytes/s
  double launch_s = 0;           // per kernel launch, GPU-side gap between kernels
  static GpuPeaks h100_sxm();
  static GpuPeaks h200();
};

// One kernel family of the step in one implementation: totals over the step.
struct StepKernel {
  std::string family;  // matmul, attention, layernorm + residual, ... (before/after rows)
  std::string name;    // "matmul fwd (bias / GELU epilogue)"
  std::string phase;   // forward | backward | optimizer
  int64_t launches = 0;
  double flops = 0;  // total over the step
  double bytes = 0;  // total over the step
  Engine engine = Engine::CudaCore;
  double compute_efficiency = 1;  // fraction of the engine's peak
  double memory_efficiency = 1;   // fraction of the bandwidth
  bool matmul = false;            // a GEMM of a Linear layer or the LM head (for checks)
  double seconds(const GpuPeaks& g) const;
  bool compute_bound(const GpuPeaks& g) const;
};

enum class Implementation { Current, Planned };
const char* implementation_name(Implementation i);

// The step's kernels for B sequences of T tokens on one GPU, bf16, in that implementation.
std::vector<StepKernel> step_kernels(const ModelShape& model, int64_t B, int64_t T,
                                     Implementation impl);

struct StepPrediction {
  double seconds = 0;
  double model_flops = 0;  // (6 N + 12 L C T) per token x B T, N without the position table
  double mfu = 0;          // model_flops / (seconds x bf16 tensor peak)
};
StepPrediction predict_step(const std::vector<StepKernel>& kernels, const ModelShape& model,
                            int64_t B, int64_t T, const GpuPeaks& gpu);

// The efficiencies used, with where each comes from (printed and written with the table).
std::vector<std::string> efficiency_sources();

}  // namespace trident::planner
