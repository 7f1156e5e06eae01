// The layout planner's cost model (see layout_planner.hpp for the formulas).
#include "trident/planner/layout_planner.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "trident/core/error.hpp"

namespace trident::planner {

int64_t ModelShape::num_parameters() const {
  const int64_t C = width;
  return vocab * C + context * C + layers * (12 * C * C + 13 * C) + 2 * C;
}

double ModelShape::flops_per_token(int64_t seq_len) const {
  const double n = static_cast<double>(num_parameters() - context * width);
  return 6.0 * n + 12.0 * static_cast<double>(layers * width * seq_len);
}

const char* precision_name(Precision p) {
  return p == Precision::BF16 ? "bf16" : "fp32";
}
int activation_bytes(Precision p) {
  return p == Precision::BF16 ? 2 : 4;
}

// --- machines ------------------------------------------------------------------------------

Hardware Hardware::preset(const std::string& name) {
  Hardware h;
  h.name = name;
  if (name == "perlmutter") {
    // NERSC Perlmutter GPU node: 4x A100-SXM4 40 GB (312 TFLOP/s bf16 dense, 19.5 fp32 without
    // TF32, 1.555 TB/s HBM2), all pairs joined by 4 NVLink 3 links (100 GB/s each way),
    // 4x Slingshot 11 NICs at 25 GB/s, one per GPU.
    h.description = "Perlmutter GPU node: 4x A100 40 GB, NVLink 3, 4x Slingshot 11 (25 GB/s)";
    h.memory_bytes = 40e9;
    h.reserved_bytes = 1.5e9;
    h.peak_flops_bf16 = 312e12;
    h.peak_flops_fp32 = 19.5e12;
    h.matmul_efficiency = 0.7;
    h.memory_bandwidth = 1.555e12;
    h.kernel_overhead_s = 3e-6;
    h.gpus_per_node = 4;
    h.intra = {8e-6, 200e9, 100e9};
    h.inter = {15e-6, 25e9, 25e9};
    h.comm_overlap = 0.9;
  } else if (name == "h100") {
    // 8x H100-SXM 80 GB (989 TFLOP/s bf16 dense, 67 fp32, 3.35 TB/s HBM3), NVLink 4 through
    // NVSwitch (450 GB/s each way; nccl-tests busbw ~450), 8x 400 Gb/s InfiniBand (50 GB/s a GPU).
    h.description = "8x H100 80 GB SXM, NVLink 4, 8x 400 Gb/s InfiniBand";
    h.memory_bytes = 80e9;
    h.reserved_bytes = 2e9;
    h.peak_flops_bf16 = 989e12;
    h.peak_flops_fp32 = 67e12;
    h.matmul_efficiency = 0.7;
    h.memory_bandwidth = 3.35e12;
    h.kernel_overhead_s = 3e-6;
    h.gpus_per_node = 8;
    h.intra = {6e-6, 400e9, 400e9};
    h.inter = {12e-6, 50e9, 50e9};
    h.comm_overlap = 0.9;
  } else if (name == "cpu") {
    // This project's 2-core development machine (AMD EPYC, 23 GB), one rank a core, one
    // OpenMP thread a rank, Open MPI over shared memory. From bench/planner_validation.sh's
    // calibrations (2026-11-25, 3 rounds, each kernel's fastest): the packed GEMM reaches
    // 83-85 GFLOP/s FLOP-weighted over the model's shapes, a whole training step ~74 GFLOP/s,
    // hence peak 80 GFLOP/s at 85% for every GEMM; AdamW streams 6 GB/s; 1.4-2.1 us of
    // dispatch per op; all-reduce 5.3 us a ring step and 2.2 GB/s bus bandwidth at gradient
    // sizes (16 MB), ping-pong 0.8 GB/s. Use --calibration for numbers measured at the shapes
    // of your model (they also follow the link's speed per message size).
    h.description = "2-core CPU (this project's machine), one rank a core, MPI shared memory";
    h.memory_bytes = 11e9;
    h.reserved_bytes = 0;
    h.peak_flops_bf16 = 0;
    h.peak_flops_fp32 = 80e9;
    h.matmul_efficiency = 0.85;
    h.memory_bandwidth = 6e9;
    h.kernel_overhead_s = 2e-6;
    h.gpus_per_node = 2;
    h.intra = {5.3e-6, 2.2e9, 0.8e9};
    h.inter = h.intra;
    h.comm_overlap = 0.0;
    h.cores = 2;
  } else {
    std::string known;
    for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(str_cat("unknown machine preset '", name, "' (known: ", known, ")"));
  }
  return h;
}

std::vector<std::string> Hardware::preset_names() {
  return {"perlmutter", "h100", "cpu"};
}

// --- kernels --------------------------------------------------------------------------------

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Gemm:
      return "gemm";
    case Kernel::Attention:
      return "attention";
    case Kernel::LayerNorm:
      return "layernorm";
    case Kernel::Gelu:
      return "gelu";
    case Kernel::BiasAdd:
      return "bias_add";
    case Kernel::BiasGrad:
      return "bias_grad";
    case Kernel::Add:
      return "add";
    case Kernel::CrossEntropy:
      return "cross_entropy";
    case Kernel::Embedding:
      return "embedding";
    case Kernel::AdamW:
      return "adamw";
    case Kernel::GradPass:
      return "grad_pass";
  }
  return "?";
}

std::string KernelCall::key() const {
  const char* dir = backward ? " bwd" : " fwd";
  switch (kernel) {
    case Kernel::Gemm:
      return str_cat("gemm M=", d0, " N=", d1, " K=", d2, " x", d3, " tA=", trans_a ? 1 : 0,
                     " tB=", trans_b ? 1 : 0);
    case Kernel::Attention:
      return str_cat(flash ? "flash_attention" : "attention", dir, " b=", d0, " T=", d1, " C=", d2,
                     " h=", d3);
    case Kernel::LayerNorm:
    case Kernel::CrossEntropy:
      return str_cat(kernel_name(kernel), dir, " ", d0, "x", d1);
    case Kernel::BiasAdd:
    case Kernel::BiasGrad:
      return str_cat(kernel_name(kernel), " ", d0, "x", d1);
    case Kernel::Embedding:
      return str_cat("embedding", dir, " ", d0, "x", d1, " V=", d2);
    case Kernel::Gelu:
      return str_cat("gelu", dir, " n=", d0);
    case Kernel::Add:
    case Kernel::AdamW:
    case Kernel::GradPass:
      return str_cat(kernel_name(kernel), " n=", d0);
  }
  return "?";
}

double KernelCall::flops() const {
  const double a = static_cast<double>(d0), b = static_cast<double>(d1),
               c = static_cast<double>(d2), d = static_cast<double>(d3);
  switch (kernel) {
    case Kernel::Gemm:
      return 2 * a * b * c * d;
    // Causal: half of S = QK^T and of PV; backward is twice forward (fused: S recomputed too).
    case Kernel::Attention:
      return (backward ? (flash ? 5 : 4) : 2) * a * b * b * c;
    case Kernel::LayerNorm:
      return (backward ? 10 : 8) * a * b;
    case Kernel::Gelu:
      return (backward ? 30 : 20) * a;
    case Kernel::CrossEntropy:
      return (backward ? 4 : 6) * a * b;
    case Kernel::AdamW:
      return 15 * a;
    case Kernel::BiasAdd:
    case Kernel::BiasGrad:
      return a * b;
    case Kernel::Add:
    case Kernel::GradPass:
      return a;
    case Kernel::Embedding:
      return 0;
  }
  return 0;
}

double KernelCall::bytes(Precision p) const {
  const double A = activation_bytes(p);
  const double a = static_cast<double>(d0), b = static_cast<double>(d1),
               c = static_cast<double>(d2), d = static_cast<double>(d3);
  switch (kernel) {
    case Kernel::Gemm:
      return (a * c + c * b + a * b) * d * A;
    case Kernel::Attention: {
      const double rows = a * b, probs = flash ? 0 : d * a * b * b;  // sequences x heads x T x T
      return backward ? (7 * rows * c + 2 * probs) * A : (4 * rows * c + probs) * A;
    }
    case Kernel::LayerNorm:
      return (backward ? 3 : 2) * a * b * A;
    case Kernel::Gelu:
      return (backward ? 3 : 2) * a * A;
    case Kernel::BiasAdd:
      return 2 * a * b * A;
    case Kernel::BiasGrad:
      return a * b * A;
    case Kernel::Add:
      return 3 * a * A;
    case Kernel::CrossEntropy:
      return (backward ? 2 : 1) * a * b * (A + 4);
    case Kernel::Embedding:
      return backward ? (c * b + 2 * a * b) * 4 : 2 * a * b * A;
    case Kernel::AdamW:
      return (p == Precision::BF16 ? 30 : 28) * a;
    case Kernel::GradPass:
      return 8 * a;
  }
  return 0;
}

RooflineCostModel::RooflineCostModel(const Hardware& hw, Precision precision)
    : hw_(hw), precision_(precision) {}

double RooflineCostModel::seconds(const KernelCall& call) const {
  const bool matrix = call.kernel == Kernel::Gemm || call.kernel == Kernel::Attention;
  // GEMMs and attention run on the matrix units at the precision's peak; the rest at fp32.
  const double rate =
      matrix ? hw_.peak_flops(precision_) * hw_.matmul_efficiency : hw_.peak_flops_fp32;
  const double compute = rate > 0 ? call.flops() / rate : 0;
  const double memory =
      hw_.memory_bandwidth > 0 ? call.bytes(precision_) / hw_.memory_bandwidth : 0;
  return std::max(compute, memory) + hw_.kernel_overhead_s;
}

TableCostModel::TableCostModel(std::map<std::string, double> seconds_by_key, const Hardware& hw,
                               Precision precision, double step_factor)
    : table_(std::move(seconds_by_key)), fallback_(hw, precision), step_factor_(step_factor) {
  TRIDENT_CHECK(step_factor > 0, "calibration: step factor ", step_factor, " must be positive");
}

double TableCostModel::seconds(const KernelCall& call) const {
  const bool optimizer = call.kernel == Kernel::AdamW || call.kernel == Kernel::GradPass;
  const double f = optimizer ? 1.0 : step_factor_;
  const auto it = table_.find(call.key());
  if (it != table_.end()) return f * it->second;
  ++misses_;
  return f * fallback_.seconds(call);
}

// --- collectives ----------------------------------------------------------------------------

namespace {

// The band whose range holds `bytes` (the last one beyond), or the link's single pair.
LinkBand band_for(const std::vector<LinkBand>& bands, double bytes, double latency,
                  double bandwidth) {
  if (bands.empty()) return {0, latency, bandwidth};
  for (const LinkBand& b : bands) {
    if (bytes <= b.max_bytes) return b;
  }
  return bands.back();
}

}  // namespace

std::vector<LinkBand> fit_link_bands(const std::vector<double>& bytes,
                                     const std::vector<double>& seconds, int ranks) {
  TRIDENT_CHECK(bytes.size() == seconds.size() && bytes.size() >= 2,
                "fit_link_bands: need at least two (bytes, seconds) samples");
  std::vector<LinkBand> out;
  for (size_t i = 0; i + 1 < bytes.size(); ++i) {
    const double dS = bytes[i + 1] - bytes[i];
    TRIDENT_CHECK(dS > 0, "fit_link_bands: sizes must increase");
    // A band that got faster with size (noise among tiny messages) is flat: pure latency.
    const double slope = std::max(seconds[i + 1] - seconds[i], 0.0) / dS;
    const double alpha = seconds[i + 1] - slope * bytes[i + 1];
    LinkBand b;
    b.max_bytes = bytes[i + 1];
    if (ranks > 1) {  // t = 2(n-1) latency + 2(n-1)/n S / busbw
      b.latency_s = alpha / (2.0 * (ranks - 1));
      b.bandwidth = slope > 0 ? 2.0 * (ranks - 1) / ranks / slope : 1e30;
    } else {
      b.latency_s = alpha;
      b.bandwidth = slope > 0 ? 1.0 / slope : 1e30;
    }
    out.push_back(b);
  }
  return out;
}

double all_reduce_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  const LinkBand b = band_for(link.collective_bands, bytes, link.latency_s, link.bus_bandwidth);
  return std::max(0.0, 2.0 * (n - 1) * b.latency_s + 2.0 * (n - 1) / n * bytes / b.bandwidth);
}
double reduce_scatter_seconds(double bytes, int n, const Link& link) {
  if (n <= 1) return 0;
  return 0.5 * all_reduce_seconds(bytes, n, link);
}
double all_gather_seconds(double bytes, int n, const Link& link) {
  return reduce_scatter_seconds(bytes, n, link);
}
double p2p_seconds(double bytes, const Link& link) {
  const LinkBand b = band_for(link.p2p_bands, bytes, link.latency_s, link.p2p_bandwidth);
  return std::max(0.0, b.latency_s + bytes / b.bandwidth);
}

// --- the model's pieces ---------------------------------------------------------------------

namespace {

// Parameter sizes of a stage in registration order (the reducer packs them in reverse).
struct Param {
  int64_t numel;
  int layer;  // stage-local block index; -1 embeddings, -2 final LayerNorm
  bool solo;  // a bucket of its own (the tied embedding under pipelining)
};

std::vector<Param> stage_param_list(const ModelShape& m, int tp, int pp, int stage) {
  const int64_t C = m.width, L = m.layers / pp;
  const bool first = stage == 0, last = stage == pp - 1;
  std::vector<Param> out;
  if (first || last) out.push_back({m.vocab / tp * C, -1, pp > 1});
  if (first) out.push_back({m.context * C, -1, false});
  for (int64_t i = 0; i < L; ++i) {
    const int l = static_cast<int>(i);
    for (int64_t n : {2 * C, 3 * C * C / tp + 3 * C / tp, C * C / tp + C, 2 * C,
                      4 * C * C / tp + 4 * C / tp, 4 * C * C / tp + C}) {
      out.push_back({n, l, false});
    }
  }
  if (last) out.push_back({2 * C, -2, false});
  return out;
}

struct GroupLinks {
  Link tp, dp, pp, world;
};

GroupLinks group_links(const Hardware& hw, const Layout& l) {
  // Ranks are tp innermost, then dp, then pp: a group stays on a node when the contiguous
  // block of ranks it spans fits on one.
  auto link = [&](int span) { return span <= hw.gpus_per_node ? hw.intra : hw.inter; };
  const int world = l.dp * l.tp * l.pp;
  return {link(l.tp), link(l.tp * l.dp), link(world), link(world)};
}

double sum_seconds(const std::vector<KernelCall>& calls, const KernelCostModel& costs,
                   bool backward_only) {
  double s = 0;
  for (const auto& c : calls) {
    if (!backward_only || c.backward) s += costs.seconds(c);
  }
  return s;
}

}  // namespace

int64_t stage_parameters(const ModelShape& model, int tp, int pp, int stage) {
  int64_t n = 0;
  for (const auto& p : stage_param_list(model, tp, pp, stage)) n += p.numel;
  return n;
}

int64_t in_flight_micro_batches(const std::string& schedule, int pp, int stage, int64_t m) {
  if (pp <= 1) return 1;
  if (schedule == "gpipe") return m;
  return std::min<int64_t>(pp - stage, m);
}

double bubble_fraction(int pp, int64_t m) {
  return static_cast<double>(pp - 1) / static_cast<double>(m + pp - 1);
}

std::vector<KernelCall> micro_batch_kernels(const ModelShape& model, int tp, int64_t b, int64_t T,
                                            int64_t layers, bool first, bool last,
                                            bool flash_attention) {
  const int64_t C = model.width, Cl = C / tp, Hl = model.heads / tp, Vl = model.vocab / tp;
  const int64_t R = b * T;
  std::vector<KernelCall> f, k;  // forward, backward (in execution order)
  auto gemm = [](int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool bwd) {
    KernelCall c{Kernel::Gemm, bwd, M, N, K, 1, ta, tb};
    return c;
  };
  auto call = [](Kernel kind, bool bwd, int64_t d0, int64_t d1 = 0, int64_t d2 = 0,
                 int64_t d3 = 1) { return KernelCall{kind, bwd, d0, d1, d2, d3, false, false}; };
  // A linear layer (in -> out features) with optional bias, forward and backward.
  auto linear = [&](int64_t in, int64_t out, bool bias, std::vector<KernelCall>& fw,
                    std::vector<KernelCall>& bw) {
    fw.push_back(gemm(R, out, in, false, true, false));
    if (bias) fw.push_back(call(Kernel::BiasAdd, false, R, out));
    if (bias) bw.push_back(call(Kernel::BiasGrad, true, R, out));
    bw.push_back(gemm(R, in, out, false, false, true));  // dx = dy W
    bw.push_back(gemm(out, in, R, true, false, true));   // dW = dy^T x
    bw.push_back(call(Kernel::Add, true, out * in));     // accumulated into the bucket
  };
  if (first) {
    f.push_back(call(Kernel::Embedding, false, R, C, Vl));
    f.push_back(call(Kernel::Embedding, false, T, C, model.context));
    f.push_back(call(Kernel::Add, false, R * C));
  }
  std::vector<KernelCall> layer_f, layer_b;
  {
    std::vector<KernelCall> b_qkv, b_proj, b_fc, b_out;
    layer_f.push_back(call(Kernel::LayerNorm, false, R, C));
    linear(C, 3 * Cl, true, layer_f, b_qkv);
    KernelCall att = call(Kernel::Attention, false, b, T, Cl, Hl);
    att.flash = flash_attention;
    layer_f.push_back(att);
    linear(Cl, C, true, layer_f, b_proj);
    layer_f.push_back(call(Kernel::Add, false, R * C));
    layer_f.push_back(call(Kernel::LayerNorm, false, R, C));
    linear(C, 4 * Cl, true, layer_f, b_fc);
    layer_f.push_back(call(Kernel::Gelu, false, R * 4 * Cl));
    linear(4 * Cl, C, true, layer_f, b_out);
    layer_f.push_back(call(Kernel::Add, false, R * C));
    // Backward, last op first; the residual stream's two branches are summed twice.
    layer_b = b_out;
    layer_b.push_back(call(Kernel::Gelu, true, R * 4 * Cl));
    layer_b.insert(layer_b.end(), b_fc.begin(), b_fc.end());
    layer_b.push_back(call(Kernel::LayerNorm, true, R, C));
    layer_b.push_back(call(Kernel::Add, true, R * C));
    layer_b.insert(layer_b.end(), b_proj.begin(), b_proj.end());
    att.backward = true;
    layer_b.push_back(att);
    layer_b.insert(layer_b.end(), b_qkv.begin(), b_qkv.end());
    layer_b.push_back(call(Kernel::LayerNorm, true, R, C));
    layer_b.push_back(call(Kernel::Add, true, R * C));
  }
  for (int64_t i = 0; i < layers; ++i) f.insert(f.end(), layer_f.begin(), layer_f.end());
  if (last) {
    f.push_back(call(Kernel::LayerNorm, false, R, C));
    f.push_back(gemm(R, Vl, C, false, true, false));
    f.push_back(call(Kernel::CrossEntropy, false, R, Vl));
    k.push_back(call(Kernel::CrossEntropy, true, R, Vl));
    k.push_back(gemm(R, C, Vl, false, false, true));
    k.push_back(gemm(Vl, C, R, true, false, true));
    k.push_back(call(Kernel::Add, true, Vl * C));
    k.push_back(call(Kernel::LayerNorm, true, R, C));
  }
  for (int64_t i = 0; i < layers; ++i) k.insert(k.end(), layer_b.begin(), layer_b.end());
  if (first) {
    k.push_back(call(Kernel::Embedding, true, T, C, model.context));
    k.push_back(call(Kernel::Embedding, true, R, C, Vl));
    k.push_back(call(Kernel::Add, true, Vl * C));
  }
  f.insert(f.end(), k.begin(), k.end());
  return f;
}

std::vector<KernelCall> optimizer_kernels(int64_t params, bool zero, int dp, bool grad_clip) {
  const int64_t shard = zero ? (params + dp - 1) / dp : params;
  std::vector<KernelCall> out;
  out.push_back({Kernel::GradPass, false, params});  // zero_grad
  if (grad_clip) {
    out.push_back({Kernel::GradPass, false, shard});  // sum of squares
    out.push_back({Kernel::GradPass, false, shard});  // scale
  }
  out.push_back({Kernel::AdamW, false, shard});
  return out;
}

// --- feasibility ----------------------------------------------------------------------------

void check_inputs(const ModelShape& m, const Hardware& hw, const TrainingSetup& s) {
  TRIDENT_CHECK(m.vocab > 0 && m.context > 0 && m.layers > 0 && m.heads > 0 && m.width > 0,
                "model sizes must be positive (vocab ", m.vocab, ", context ", m.context,
                ", layers ", m.layers, ", heads ", m.heads, ", width ", m.width, ")");
  TRIDENT_CHECK(m.width % m.heads == 0, "--heads ", m.heads,
                " does not divide the embedding width ", m.width);
  TRIDENT_CHECK(s.seq_len > 0 && s.seq_len <= m.context, "--seq ", s.seq_len,
                " is longer than the model's context of ", m.context, " (or not positive)");
  TRIDENT_CHECK(s.global_batch > 0, "--global-batch must be positive, got ", s.global_batch);
  TRIDENT_CHECK(s.world_size > 0, "--gpus must be positive, got ", s.world_size);
  TRIDENT_CHECK(s.schedule == "1f1b" || s.schedule == "gpipe",
                "--schedule must be 1f1b or gpipe, got '", s.schedule, "'");
  TRIDENT_CHECK(s.bucket_bytes > 0, "--bucket-mb must be positive");
  TRIDENT_CHECK(hw.memory_bytes > 0 && hw.memory_bandwidth > 0 && hw.peak_flops(s.precision) > 0,
                "machine '", hw.name, "' has no memory size, bandwidth or ",
                precision_name(s.precision),
                " peak FLOP/s (set --gpu-memory, --mem-bw, --peak-tflops)");
  TRIDENT_CHECK(hw.intra.bus_bandwidth > 0 && hw.inter.bus_bandwidth > 0 &&
                    hw.intra.p2p_bandwidth > 0 && hw.inter.p2p_bandwidth > 0,
                "machine '", hw.name, "' needs positive link bandwidths");
  TRIDENT_CHECK(hw.gpus_per_node > 0, "--gpus-per-node must be positive");
}

std::string layout_problem(const ModelShape& m, const TrainingSetup& s, int dp, int tp, int pp,
                           int64_t micro_batches) {
  if (m.heads % tp != 0)
    return str_cat("--tp ", tp, " does not divide ", m.heads, " attention heads");
  if (m.vocab % tp != 0) {
    const int64_t padded = (m.vocab + 127) / 128 * 128;
    return str_cat("--tp ", tp, " does not divide the vocabulary of ", m.vocab, " tokens",
                   padded % tp == 0 ? str_cat(" (pad it: --vocab ", padded, ")") : "");
  }
  if (m.layers % pp != 0)
    return str_cat("--pp ", pp, " does not divide the model's ", m.layers, " layers");
  if (s.global_batch % dp != 0) {
    return str_cat("global batch ", s.global_batch, " is not divisible by --dp ", dp);
  }
  if (micro_batches > 0 && (s.global_batch / dp) % micro_batches != 0) {
    return str_cat("global batch ", s.global_batch, " / dp ", dp, " is not divisible by ",
                   micro_batches, " micro-batches");
  }
  return "";
}

// --- memory ---------------------------------------------------------------------------------

MemoryEstimate predict_memory(const ModelShape& model, const Hardware& hw, const TrainingSetup& s,
                              const Layout& l) {
  const double A = activation_bytes(s.precision);
  const double C = static_cast<double>(model.width), t = l.tp, a = static_cast<double>(model.heads);
  const double T = static_cast<double>(s.seq_len), R = static_cast<double>(l.micro_batch_size) * T;
  const double Vl = static_cast<double>(model.vocab / l.tp);
  // Attention probabilities (a/t heads x T per token), or the fused kernel's log-sum-exp.
  const double att = s.flash_attention ? 4 * a / t : a * T / t * A;
  const double per_token_layer = (4 * C + 12 * C / t) * A + att + 16;
  const double backward_work = R * ((2 * C + 12 * C / t) * A + att);
  MemoryEstimate best;
  std::vector<double> totals;
  for (int stage = 0; stage < l.pp; ++stage) {
    const bool last = stage == l.pp - 1;
    const int64_t P = stage_parameters(model, l.tp, l.pp, stage);
    const double p = static_cast<double>(P);
    MemoryEstimate e;
    e.stage = stage;
    e.params = P;
    e.in_flight = in_flight_micro_batches(s.schedule, l.pp, stage, l.micro_batches);
    const bool bf16 = s.precision == Precision::BF16;
    e.weights = (bf16 ? 2 : 4) * p;
    e.grads = 4 * p + (l.zero ? 4 * p / l.dp : 0);
    e.optimizer = (bf16 ? 12 : 8) * p / (l.zero ? l.dp : 1);
    const double layers = static_cast<double>(model.layers / l.pp);
    double per_mb = layers * R * per_token_layer;
    double transient = backward_work;
    double largest_weight = 4 * C * C / t;
    if (last) {
      per_mb += R * (2 * C + Vl) * A;  // ln_f input and output, logits
      transient += 4 * R * Vl;         // the logits' gradient
      largest_weight = std::max(largest_weight, Vl * C);
    }
    transient += 4 * largest_weight;  // a weight gradient before it joins its bucket
    e.activations = static_cast<double>(e.in_flight) * per_mb + transient;
    e.reserved = hw.reserved_bytes;
    totals.push_back(e.total());
    if (stage == 0 || e.total() > best.total()) best = e;
  }
  best.stage_totals = totals;
  return best;
}

// --- time -----------------------------------------------------------------------------------

Prediction predict(const ModelShape& model, const Hardware& hw, const TrainingSetup& s,
                   const Layout& l, const KernelCostModel& costs) {
  Prediction pr;
  pr.layout = l;
  pr.memory = predict_memory(model, hw, s, l);
  const GroupLinks links = group_links(hw, l);
  const double A = activation_bytes(s.precision);
  const double T = static_cast<double>(s.seq_len), b = static_cast<double>(l.micro_batch_size);
  const double R = b * T, C = static_cast<double>(model.width);
  const int64_t m = l.micro_batches, layers = model.layers / l.pp;
  const double eta = s.overlap ? hw.comm_overlap : 0.0;
  const double act_msg = p2p_seconds(R * C * A, links.pp);

  struct Stage {
    double fwd = 0, bwd = 0, tp = 0, p2p = 0, per_mb = 0, dp_total = 0, dp_exposed = 0, opt = 0;
  };
  std::vector<Stage> st(static_cast<size_t>(l.pp));
  for (int s_idx = 0; s_idx < l.pp; ++s_idx) {
    Stage& g = st[static_cast<size_t>(s_idx)];
    const bool first = s_idx == 0, last = s_idx == l.pp - 1;
    const auto calls = micro_batch_kernels(model, l.tp, l.micro_batch_size, s.seq_len, layers,
                                           first, last, s.flash_attention);
    const double total = sum_seconds(calls, costs, false);
    g.bwd = sum_seconds(calls, costs, true);
    g.fwd = total - g.bwd;
    if (l.tp > 1) {
      const double ar = all_reduce_seconds(R * C * A, l.tp, links.tp);
      g.tp = static_cast<double>(layers) * 4 * ar;
      if (first) g.tp += ar;  // vocabulary-parallel embedding
      if (last) g.tp += ar + 3 * all_reduce_seconds(R * 4, l.tp, links.tp);  // head input, loss
    }
    const int receives = (first ? 0 : 1) + (last ? 0 : 1);
    g.p2p = (1 - eta) * receives * act_msg;
    g.per_mb = g.fwd + g.bwd + g.tp + g.p2p;

    // Gradient buckets, packed in reverse registration order, launched as the last
    // micro-batch's backward makes them ready.
    const auto params = stage_param_list(model, l.tp, l.pp, s_idx);
    auto ends_bwd = [&](bool emb, bool head) {
      return sum_seconds(
          micro_batch_kernels(model, l.tp, l.micro_batch_size, s.seq_len, 0, emb, head), costs,
          true);
    };
    const double head_bwd = last ? ends_bwd(false, true) : 0;
    const double emb_bwd = first ? ends_bwd(true, false) : 0;
    const double layer_bwd =
        layers > 0 ? (g.bwd - head_bwd - emb_bwd) / static_cast<double>(layers) : 0;
    auto ready_at = [&](const Param& p) {
      if (p.layer == -2) return head_bwd;
      if (p.layer == -1) return g.bwd;
      return head_bwd + static_cast<double>(layers - p.layer) * layer_bwd;
    };
    struct Bucket {
      double bytes = 0, ready = 0;
    };
    std::vector<Bucket> buckets;
    Bucket cur;
    auto close = [&]() {
      if (cur.bytes > 0) buckets.push_back(cur);
      cur = Bucket{};
    };
    for (auto it = params.rbegin(); it != params.rend(); ++it) {
      if (it->solo) {
        close();
        buckets.push_back({4.0 * static_cast<double>(it->numel), ready_at(*it)});
        continue;
      }
      cur.bytes += 4.0 * static_cast<double>(it->numel);
      cur.ready = std::max(cur.ready, ready_at(*it));
      if (cur.bytes >= s.bucket_bytes) close();
    }
    close();
    double free_at = 0, gather = 0;
    for (const Bucket& k : buckets) {
      const double c = l.zero ? reduce_scatter_seconds(k.bytes, l.dp, links.dp)
                              : all_reduce_seconds(k.bytes, l.dp, links.dp);
      g.dp_total += c;
      free_at = std::max(free_at, s.overlap ? k.ready : g.bwd) + c;
      if (l.zero) gather += all_gather_seconds(k.bytes * A / 4, l.dp, links.dp);
    }
    const double outlasting = std::max(0.0, free_at - g.bwd);
    g.dp_exposed = eta * outlasting + (1 - eta) * g.dp_total + gather;
    g.opt = sum_seconds(
        optimizer_kernels(stage_parameters(model, l.tp, l.pp, s_idx), l.zero, l.dp, s.grad_clip),
        costs, false);
  }
  // The pipeline: the first micro-batch crosses every stage, the rest follow at the pace of
  // the slowest; transfers compute hides still lie on the fill and drain path.
  size_t slow = 0;
  double sum = 0;
  for (size_t i = 0; i < st.size(); ++i) {
    sum += st[i].per_mb;
    if (st[i].per_mb > st[slow].per_mb) slow = i;
  }
  const double md = static_cast<double>(m);
  const double pipe = l.pp > 1 ? sum + (md - 1) * st[slow].per_mb + 2 * (l.pp - 1) * eta * act_msg
                               : md * st[0].per_mb;
  TimeEstimate& t = pr.time;
  t.compute = md * (st[slow].fwd + st[slow].bwd);
  t.tp_comm = md * st[slow].tp;
  t.pp_comm = md * st[slow].p2p + (l.pp > 1 ? 2 * (l.pp - 1) * eta * act_msg : 0);
  t.bubble = pipe - md * st[slow].per_mb - (l.pp > 1 ? 2 * (l.pp - 1) * eta * act_msg : 0);
  // After the pipeline drains, each stage waits for its reductions and steps its optimizer;
  // the slowest of them ends the step.
  const Stage* tail = &st[0];
  for (const Stage& g : st) {
    if (g.dp_exposed + g.opt > tail->dp_exposed + tail->opt) tail = &g;
  }
  t.dp_comm = tail->dp_total;
  t.optimizer = tail->opt;
  // Tied embedding (first + last stage), clip norm (world), loss (dp, pp): small reductions.
  t.syncs = all_reduce_seconds(8, l.dp, links.dp) + all_reduce_seconds(8, l.pp, links.pp);
  if (s.grad_clip) t.syncs += all_reduce_seconds(8, l.dp * l.tp * l.pp, links.world);
  if (l.pp > 1)
    t.syncs += all_reduce_seconds(4.0 * static_cast<double>(model.vocab / l.tp) * C, 2, links.pp);
  t.dp_exposed = tail->dp_exposed;
  const int world = l.dp * l.tp * l.pp;
  auto share = [&](int ranks) {
    return hw.cores > 0 && ranks > hw.cores ? static_cast<double>(ranks) / hw.cores : 1.0;
  };
  t.time_share = share(world) / (hw.calibrated_ranks > 0 ? share(hw.calibrated_ranks) : 1.0);
  t.step = t.time_share * (pipe + t.dp_exposed + t.syncs + t.optimizer);
  t.compute *= t.time_share;
  t.tp_comm *= t.time_share;
  t.pp_comm *= t.time_share;
  t.bubble *= t.time_share;
  t.dp_comm *= t.time_share;
  t.dp_exposed *= t.time_share;
  t.syncs *= t.time_share;
  t.optimizer *= t.time_share;
  const double tokens = static_cast<double>(s.global_batch) * T;
  pr.tokens_per_s = tokens / t.step;
  pr.mfu =
      model.flops_per_token(s.seq_len) * tokens / (t.step * world * hw.peak_flops(s.precision));
  return pr;
}

// --- enumeration ----------------------------------------------------------------------------

std::string Layout::describe() const {
  std::string s = str_cat("dp ", dp, " x tp ", tp, " x pp ", pp);
  if (micro_batches > 0) s += str_cat(", m ", micro_batches, " x b ", micro_batch_size);
  if (zero) s += ", ZeRO-1";
  return s;
}

std::string format_gb(double bytes) {
  char buf[32];
  if (bytes >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  }
  return buf;
}

std::vector<Prediction> plan(const ModelShape& model, const Hardware& hw, const TrainingSetup& s,
                             const KernelCostModel& costs) {
  check_inputs(model, hw, s);
  std::vector<Prediction> feasible, infeasible;
  const int world = s.world_size;
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp != 0) continue;
    for (int pp = 1; pp <= world / tp; ++pp) {
      if ((world / tp) % pp != 0) continue;
      const int dp = world / (tp * pp);
      const std::string problem = layout_problem(model, s, dp, tp, pp, 0);
      if (!problem.empty()) {
        Prediction p;
        p.layout = {dp, tp, pp, 0, 0, false};
        p.feasible = false;
        p.reason = problem;
        infeasible.push_back(p);
        continue;
      }
      const int64_t per_dp = s.global_batch / dp;
      for (int64_t m = 1; m <= per_dp; ++m) {
        if (per_dp % m != 0) continue;
        if (s.max_micro_batches > 0 && m > s.max_micro_batches) break;
        for (int z = 0; z < (dp > 1 ? 2 : 1); ++z) {
          const Layout l{dp, tp, pp, m, per_dp / m, z == 1};
          Prediction p = predict(model, hw, s, l, costs);
          const double need = p.memory.total();
          if (need > hw.memory_bytes) {
            p.feasible = false;
            p.reason = str_cat("OOM: ", format_gb(need), " > ", format_gb(hw.memory_bytes));
            infeasible.push_back(p);
          } else {
            feasible.push_back(p);
          }
        }
      }
    }
  }
  std::stable_sort(feasible.begin(), feasible.end(), [](const Prediction& a, const Prediction& b) {
    if (a.time.step != b.time.step) return a.time.step < b.time.step;
    return a.memory.total() < b.memory.total();
  });
  // Layouts that do not divide the model first, then OOM ones, smallest first.
  std::stable_sort(infeasible.begin(), infeasible.end(),
                   [](const Prediction& a, const Prediction& b) {
                     const bool ad = a.layout.micro_batches == 0, bd = b.layout.micro_batches == 0;
                     if (ad != bd) return ad;
                     return !ad && a.memory.total() < b.memory.total();
                   });
  feasible.insert(feasible.end(), infeasible.begin(), infeasible.end());
  return feasible;
}

}  // namespace trident::planner
