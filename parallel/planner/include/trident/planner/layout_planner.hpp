// The layout planner's cost model: for a GPT, a global batch and a machine, every feasible
// dp x tp x pp layout, micro-batch count and ZeRO-1 setting with its predicted memory and step
// time per GPU, ranked by step time (trident-planner is its command line).
//
// Memory per rank, on the stage that needs the most (P = that stage's parameters on one tp
// rank, d = dp, A = bytes of an activation element: 4 fp32, 2 bf16):
//   weights     4P (fp32) | 2P (bf16 working copy)
//   gradients   4P (fp32 buckets, as the reducer reduces in fp32), + 4P/d shard under ZeRO-1
//   optimizer   Adam m, v (+ fp32 master under bf16): 8P | 12P, divided by d under ZeRO-1
//   activations per micro-batch of b sequences of T tokens (R = bT rows), per layer
//               R (4C + 12C/t + aT/t) A + 16R bytes (LayerNorm statistics): the saved inputs
//               of both LayerNorms, the QKV, attention-output, MLP and GELU tensors, the
//               attention probabilities (a heads, full T x T as the CPU kernel keeps them;
//               fused attention keeps 4a/t bytes of log-sum-exp a token instead);
//               times the micro-batches alive at once on the stage (1F1B: min(p - s, m) on
//               stage s; GPipe: m; no pipeline: 1); the last stage adds the logits
//               R V/t (A + 4) and their gradient R V/t 4; plus one layer's worth of gradients
//               in flight during backward.
// Step time, slowest stage (all collectives alpha-beta, ring algorithms: all-reduce
// 2(n-1) alpha + 2(n-1)/n S/beta, reduce-scatter and all-gather half of that):
//   per micro-batch  the stage's kernels (GEMMs, attention, LayerNorm, GELU, ... priced by a
//                    KernelCostModel), its tensor-parallel all-reduces (2 per layer forward,
//                    2 backward, plus the vocabulary-parallel embedding and loss), and the
//                    part of its pipeline send/recv that compute does not hide
//   pipeline         sum over stages + (m - 1) x slowest stage; with equal stages this is
//                    (m + p - 1) t, so the bubble is (p - 1) / (m + p - 1) of it (1F1B = GPipe)
//   data parallel    bucketed gradient all-reduce (reduce-scatter under ZeRO-1) launched as the
//                    last micro-batch's backward makes each bucket ready; only what outlasts
//                    backward counts (scaled by the machine's overlap factor), then ZeRO-1's
//                    all-gather of the updated parameters, the tied-embedding all-reduce
//                    between first and last stage, and the clip/loss reductions
//   optimizer        AdamW over the rank's parameters (its shard under ZeRO-1), plus zeroing,
//                    norm and scaling passes over the gradients
// Ranks that share cores (a CPU machine with more ranks than cores) slow everything by
// share(ranks) = max(1, ranks / cores), divided by share(calibrated ranks) when the costs were
// measured with that many ranks at once. Pure logic: no MPI, no kernels; the calibrating CPU
// costs live in the tool.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trident::planner {

// GPT-2 sizes (models/gpt_config.hpp's GPTConfig, repeated here because parallel/ does not
// depend on models/).
struct ModelShape {
  std::string name = "custom";
  int64_t vocab = 50257;
  int64_t context = 1024;  // rows of the position table
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t width = 768;
  int64_t num_parameters() const;  // tied head counted once, as GPTConfig
  // 6N + 12 L C T: the standard training FLOPs per token (full attention), for MFU.
  double flops_per_token(int64_t seq_len) const;
};

enum class Precision { FP32, BF16 };
const char* precision_name(Precision p);
int activation_bytes(Precision p);

// Alpha and beta of a link for messages up to `max_bytes` (the last band of a list also covers
// everything larger): latency_s per ring step (collectives) or per message (point-to-point),
// bandwidth in bytes/s (bus bandwidth for collectives).
struct LinkBand {
  double max_bytes = 0, latency_s = 0, bandwidth = 0;
};

// One collective-capable link class: ring collectives reach `bus_bandwidth` (bytes/s, as
// nccl-tests' busbw), a point-to-point transfer `p2p_bandwidth`; `latency_s` is alpha.
// A calibrated link (trident-planner --calibrate) instead holds alpha and beta per
// message-size band, the straight line between neighbouring measured sizes: real transports
// switch protocols with the size (eager / rendezvous, NCCL's LL / Simple) and slow down once a
// message spills out of the caches, which one alpha-beta pair cannot follow over 4 B to 16 MB.
struct Link {
  Link() = default;
  Link(double latency, double bus, double p2p)
      : latency_s(latency), bus_bandwidth(bus), p2p_bandwidth(p2p) {}
  double latency_s = 0;
  double bus_bandwidth = 0;
  double p2p_bandwidth = 0;
  std::vector<LinkBand> collective_bands, p2p_bands;  // empty: the single pair above
};

struct Hardware {
  std::string name, description;
  double memory_bytes = 0;    // per GPU (per rank on a CPU)
  double reserved_bytes = 0;  // runtime context, communicator buffers, fragmentation
  double peak_flops_bf16 = 0, peak_flops_fp32 = 0;  // per GPU, dense
  double matmul_efficiency = 1;                     // fraction of peak a large GEMM reaches
  double memory_bandwidth = 0;                      // bytes/s, for memory-bound kernels
  double kernel_overhead_s = 0;                     // per kernel launch / op dispatch
  int gpus_per_node = 1;
  Link intra, inter;
  // Fraction of a gradient reduction that can hide behind backward (1: separate copy engines
  // and NICs; 0: the same cores do both, as MPI over shared memory on a CPU).
  double comm_overlap = 1;
  int cores = 0;  // > 0: the ranks share this many cores; time scales by ranks / cores
  // > 0: the kernel and link costs were measured (trident-planner --calibrate) with this many
  // ranks running at once on the machine, so they already include that much core sharing.
  int calibrated_ranks = 0;
  double peak_flops(Precision p) const {
    return p == Precision::BF16 ? peak_flops_bf16 : peak_flops_fp32;
  }

  // "perlmutter" (4x A100 40 GB, NVLink 3, 4x Slingshot 11), "h100" (8x H100 80 GB SXM,
  // NVLink 4, 8x 400 Gb/s InfiniBand), "cpu" (this project's 2-core machine, one rank a core).
  static Hardware preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

// One kernel call of a training step. Sizes by kernel:
//   Gemm         d0 = M, d1 = N, d2 = K, d3 = batch; C (M x N) = op(A) (M x K) op(B) (K x N)
//   Attention    d0 = sequences, d1 = T, d2 = local width C/t, d3 = local heads (causal;
//                `flash`: fused, probabilities recomputed in backward instead of stored)
//   LayerNorm, BiasAdd, BiasGrad, CrossEntropy, Embedding   d0 = rows, d1 = columns
//                (CrossEntropy: columns = local vocabulary; Embedding: d2 = table rows)
//   Gelu, Add, AdamW, GradPass   d0 = elements (GradPass: one read-modify-write over grads)
enum class Kernel {
  Gemm,
  Attention,
  LayerNorm,
  Gelu,
  BiasAdd,
  BiasGrad,
  Add,
  CrossEntropy,
  Embedding,
  AdamW,
  GradPass
};
const char* kernel_name(Kernel k);

struct KernelCall {
  Kernel kernel = Kernel::Add;
  bool backward = false;
  int64_t d0 = 0, d1 = 0, d2 = 0, d3 = 1;
  bool trans_a = false, trans_b = false;
  bool flash = false;
  // "gemm M=1024 N=768 K=256 x1 tA=0 tB=1", "gelu bwd n=262144": a calibration table's key.
  std::string key() const;
  double flops() const;
  double bytes(Precision p) const;  // memory traffic, for the roofline
  bool operator<(const KernelCall& o) const { return key() < o.key(); }
};

// Prices a kernel call in seconds.
class KernelCostModel {
 public:
  virtual ~KernelCostModel() = default;
  virtual double seconds(const KernelCall& call) const = 0;
};

// max(flops / (peak x efficiency), bytes / memory bandwidth) + overhead per call.
class RooflineCostModel : public KernelCostModel {
 public:
  RooflineCostModel(const Hardware& hw, Precision precision);
  double seconds(const KernelCall& call) const override;

 private:
  Hardware hw_;
  Precision precision_;
};

// Measured seconds by KernelCall::key(), falling back to a roofline for calls not in the table.
// `step_factor` scales the forward and backward kernels (not the optimizer's): the measured
// ratio of a real training micro-batch through the framework to the sum of its kernels timed
// alone (autograd, allocation, activations read back from memory after the rest of the step
// evicted them from the caches).
class TableCostModel : public KernelCostModel {
 public:
  TableCostModel(std::map<std::string, double> seconds_by_key, const Hardware& hw,
                 Precision precision, double step_factor = 1.0);
  double seconds(const KernelCall& call) const override;
  size_t misses() const { return misses_; }

 private:
  std::map<std::string, double> table_;
  RooflineCostModel fallback_;
  double step_factor_ = 1.0;
  mutable size_t misses_ = 0;
};

struct TrainingSetup {
  int64_t global_batch = 512;  // sequences per optimizer step
  int64_t seq_len = 1024;
  int world_size = 8;
  Precision precision = Precision::BF16;
  std::string schedule = "1f1b";  // or "gpipe"
  double bucket_bytes = 25.0 * (1 << 20);
  bool overlap = true;  // reduce gradient buckets during backward
  bool grad_clip = true;
  int64_t max_micro_batches = 0;  // 0: every divisor
  // Fused (flash) attention keeps only a log-sum-exp per row and head for backward and
  // recomputes the probabilities there (cuDNN / FlashAttention on GPUs); the CPU kernel keeps
  // the (T x T) probabilities.
  bool flash_attention = false;
};

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  int64_t micro_batches = 1;
  int64_t micro_batch_size = 0;  // sequences per micro-batch per dp rank
  bool zero = false;
  std::string describe() const;  // "dp 2 x tp 1 x pp 4, m 8 x b 4, ZeRO-1"
};

struct MemoryEstimate {  // bytes per rank on `stage`, the stage that needs the most
  int stage = 0;
  int64_t params = 0;     // parameters on that rank
  int64_t in_flight = 1;  // micro-batches whose activations are alive at once
  double weights = 0, grads = 0, optimizer = 0, activations = 0, reserved = 0;
  std::vector<double> stage_totals;  // total() of every stage, first to last
  double total() const { return weights + grads + optimizer + activations + reserved; }
};

struct TimeEstimate {     // seconds per optimizer step
  double compute = 0;     // slowest stage's kernels over the step's micro-batches
  double tp_comm = 0;     // its tensor-parallel all-reduces
  double pp_comm = 0;     // exposed send/recv
  double bubble = 0;      // pipeline fill and drain
  double dp_comm = 0;     // gradient reduction in total
  double dp_exposed = 0;  // the part not hidden behind backward, + ZeRO-1's all-gather
  double syncs = 0;       // tied-embedding all-reduce (pp > 1), clip-norm and loss reductions
  double optimizer = 0;
  double time_share = 1;  // share(ranks) / share(calibrated ranks) when ranks share cores
  double step = 0;
};

struct Prediction {
  Layout layout;
  bool feasible = true;
  std::string reason;  // why not: "--tp 2 does not divide ...", "OOM: 52.1 GB > 40 GB"
  MemoryEstimate memory;
  TimeEstimate time;
  double tokens_per_s = 0;
  double mfu = 0;  // model FLOPs (6N + 12LCT per token) / (step x ranks x peak)
};

// What trident-train's validate() would reject for this layout (empty when it divides the
// heads, vocabulary, layers and the global batch).
std::string layout_problem(const ModelShape& model, const TrainingSetup& setup, int dp, int tp,
                           int pp, int64_t micro_batches);

// Throws trident::Error for input no layout can fix (heads not dividing the width, a
// sequence longer than the context, non-positive sizes).
void check_inputs(const ModelShape& model, const Hardware& hw, const TrainingSetup& setup);

// Parameters held by one tp rank of pipeline stage `stage` of `pp`.
int64_t stage_parameters(const ModelShape& model, int tp, int pp, int stage);
// Micro-batches whose activations stage `stage` holds at once.
int64_t in_flight_micro_batches(const std::string& schedule, int pp, int stage, int64_t m);
// Ideal pipeline bubble fraction (p - 1) / (m + p - 1).
double bubble_fraction(int pp, int64_t m);

// The kernels of one micro-batch (b sequences of T tokens) through `layers` blocks of a stage
// on one tp rank, forward then backward; `first`/`last`: the stage holds the embeddings / head.
std::vector<KernelCall> micro_batch_kernels(const ModelShape& model, int tp, int64_t b, int64_t T,
                                            int64_t layers, bool first, bool last,
                                            bool flash_attention = false);
// The optimizer step's kernels for `params` parameters on a rank (ZeRO-1: its 1/dp shard).
std::vector<KernelCall> optimizer_kernels(int64_t params, bool zero, int dp, bool grad_clip);

// Piecewise alpha-beta bands through measured (bytes, seconds) samples, sorted by size. For
// collectives the samples are all-reduces over `ranks` ranks and each band holds the per-step
// latency and bus bandwidth of the ring model (so it can be applied to other group sizes); for
// point-to-point (`ranks` = 0) latency and bandwidth of one message.
std::vector<LinkBand> fit_link_bands(const std::vector<double>& bytes,
                                     const std::vector<double>& seconds, int ranks);

// Ring collectives and point-to-point transfers over n ranks, alpha-beta.
double all_reduce_seconds(double bytes, int n, const Link& link);
double reduce_scatter_seconds(double bytes, int n, const Link& link);  // bytes: the full buffer
double all_gather_seconds(double bytes, int n, const Link& link);      // bytes: the full buffer
double p2p_seconds(double bytes, const Link& link);

MemoryEstimate predict_memory(const ModelShape& model, const Hardware& hw,
                              const TrainingSetup& setup, const Layout& layout);
// Memory and time of one layout (its divisibility is not checked; see layout_problem).
Prediction predict(const ModelShape& model, const Hardware& hw, const TrainingSetup& setup,
                   const Layout& layout, const KernelCostModel& costs);

// Every candidate: each dp x tp x pp of the world (one infeasible entry when it does not divide
// the model or the batch), each micro-batch count dividing the batch, ZeRO-1 on and off
// (dp > 1). Feasible layouts first, fastest first; then the infeasible ones.
std::vector<Prediction> plan(const ModelShape& model, const Hardware& hw,
                             const TrainingSetup& setup, const KernelCostModel& costs);

// "52.1 GB"
std::string format_gb(double bytes);

}  // namespace trident::planner
