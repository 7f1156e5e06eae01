// trident-planner: which dp x tp x pp layout, micro-batch count and ZeRO setting to train a GPT
// with, on a given machine. Prints every feasible layout ranked by predicted step time, with
// predicted memory per GPU, and every infeasible one with its reason (or all of it as --json).
// The cost model is parallel/layout_planner.hpp; this file is the command line, the output
// and --calibrate, which measures this machine's kernels (the library's own CPU kernels at the
// model's shapes, one thread) and links (all-reduce and ping-pong through MpiCommunicator,
// under mpirun) and plans with the measurements.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <utility>
#include <vector>

#include "trident/core/error.hpp"
#include "trident/core/ops.hpp"
#include "trident/kernels/cpu/activation.hpp"
#include "trident/kernels/cpu/attention.hpp"
#include "trident/kernels/cpu/cross_entropy.hpp"
#include "trident/kernels/cpu/elementwise.hpp"
#include "trident/kernels/cpu/embedding.hpp"
#include "trident/kernels/cpu/gemm.hpp"
#include "trident/kernels/cpu/layernorm.hpp"
#include "trident/kernels/cpu/optimizer.hpp"
#include "trident/models/gpt.hpp"
#include "trident/models/gpt_config.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/mpi_runtime.hpp"
#include "trident/planner/kernel_step_model.hpp"
#include "trident/planner/layout_planner.hpp"

namespace tp = trident::planner;
namespace kc = trident::kernels::cpu;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// The fastest of 5 batches' time per call of `fn`, each batch running it enough times to last
// at least 5 ms (after one warm-up call). The fastest, not the median: on a shared or virtual
// machine other load only ever slows a batch down, so the minimum is the kernel's own cost.
template <typename Fn>
double time_call(Fn&& fn) {
  fn();
  int reps = 1;
  auto t0 = Clock::now();
  fn();
  const double once = std::max(seconds_since(t0), 1e-7);
  reps = std::max(1, static_cast<int>(5e-3 / once));
  std::vector<double> batches;
  for (int k = 0; k < 5; ++k) {
    t0 = Clock::now();
    for (int r = 0; r < reps; ++r) fn();
    batches.push_back(seconds_since(t0) / reps);
  }
  return *std::min_element(batches.begin(), batches.end());
}

std::vector<float> filled(int64_t n, float scale = 0.02f) {
  std::vector<float> v(static_cast<size_t>(std::max<int64_t>(n, 1)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = scale * static_cast<float>((i * 7919) % 1000) / 1000.0f;
  return v;
}

// Runs the library's f32 CPU kernel a call stands for on scratch buffers of its shapes.
double measure_kernel(const tp::KernelCall& c) {
  const int64_t d0 = c.d0, d1 = c.d1, d2 = c.d2, d3 = c.d3;
  switch (c.kernel) {
    case tp::Kernel::Gemm: {
      auto A = filled(d0 * d2 * d3), B = filled(d2 * d1 * d3), C = filled(d0 * d1 * d3);
      const int64_t lda = c.trans_a ? d0 : d2, ldb = c.trans_b ? d2 : d1;
      return time_call([&] {
        kc::gemm<float>(c.trans_a, c.trans_b, d0, d1, d2, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                        C.data(), d1);
      });
    }
    case tp::Kernel::Attention: {
      const int64_t rows = d0 * d1;
      auto qkv = filled(rows * 3 * d2, 1.0f), out = filled(rows * d2),
           att = filled(d0 * d3 * d1 * d1);
      kc::attention_forward<float>(out.data(), att.data(), qkv.data(), d0, d1, d2, d3);
      if (!c.backward) {
        return time_call([&] {
          kc::attention_forward<float>(out.data(), att.data(), qkv.data(), d0, d1, d2, d3);
        });
      }
      auto dqkv = filled(rows * 3 * d2), dout = filled(rows * d2);
      return time_call([&] {
        kc::attention_backward<float>(dqkv.data(), dout.data(), qkv.data(), att.data(), d0, d1, d2,
                                      d3);
      });
    }
    case tp::Kernel::LayerNorm: {
      auto x = filled(d0 * d1, 1.0f), y = filled(d0 * d1), w = filled(d1, 1.0f), b = filled(d1);
      auto mean = filled(d0), rstd = filled(d0);
      kc::layernorm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                                   d0, d1, 1e-5f);
      if (!c.backward) {
        return time_call([&] {
          kc::layernorm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                       b.data(), d0, d1, 1e-5f);
        });
      }
      auto dx = filled(d0 * d1), dw = filled(d1), db = filled(d1);
      return time_call([&] {
        kc::layernorm_backward<float>(dx.data(), dw.data(), db.data(), y.data(), x.data(), w.data(),
                                      mean.data(), rstd.data(), d0, d1);
      });
    }
    case tp::Kernel::Gelu: {
      auto x = filled(d0, 1.0f), y = filled(d0), g = filled(d0);
      if (!c.backward) return time_call([&] { kc::gelu_forward<float>(y.data(), x.data(), d0); });
      return time_call([&] { kc::gelu_backward<float>(g.data(), x.data(), y.data(), d0); });
    }
    case tp::Kernel::BiasAdd: {
      auto x = filled(d0 * d1), b = filled(d1);
      return time_call([&] { kc::add_bias<float>(x.data(), x.data(), b.data(), d0, d1); });
    }
    case tp::Kernel::BiasGrad: {
      auto g = filled(d0 * d1), db = filled(d1);
      return time_call([&] { kc::bias_backward<float>(db.data(), g.data(), d0, d1); });
    }
    case tp::Kernel::Add: {
      auto a = filled(d0), b = filled(d0);
      return time_call([&] { kc::add<float>(a.data(), a.data(), b.data(), d0); });
    }
    case tp::Kernel::GradPass: {
      auto a = filled(d0);
      return time_call([&] { kc::scale<float>(a.data(), a.data(), 0.999f, d0); });
    }
    case tp::Kernel::CrossEntropy: {
      auto logits = filled(d0 * d1, 1.0f), losses = filled(d0), lse = filled(d0),
           dl = filled(d0 * d1);
      std::vector<int32_t> targets(static_cast<size_t>(d0));
      for (size_t i = 0; i < targets.size(); ++i)
        targets[i] = static_cast<int32_t>(i % static_cast<size_t>(d1));
      kc::cross_entropy_forward<float>(losses.data(), lse.data(), logits.data(), targets.data(), d0,
                                       d1);
      if (!c.backward) {
        return time_call([&] {
          kc::cross_entropy_forward<float>(losses.data(), lse.data(), logits.data(), targets.data(),
                                           d0, d1);
        });
      }
      return time_call([&] {
        kc::cross_entropy_backward<float>(dl.data(), logits.data(), lse.data(), targets.data(),
                                          losses.data(), d0, d1);
      });
    }
    case tp::Kernel::Embedding: {
      auto table = filled(d2 * d1), out = filled(d0 * d1);
      std::vector<int32_t> ids(static_cast<size_t>(d0));
      for (size_t i = 0; i < ids.size(); ++i)
        ids[i] = static_cast<int32_t>((i * 31) % static_cast<size_t>(d2));
      if (!c.backward) {
        return time_call([&] {
          kc::embedding_forward<float>(out.data(), ids.data(), table.data(), d0, d2, d1);
        });
      }
      return time_call(
          [&] { kc::embedding_backward<float>(table.data(), out.data(), ids.data(), d0, d2, d1); });
    }
    case tp::Kernel::AdamW: {
      auto p = filled(d0), g = filled(d0), m = filled(d0), v = filled(d0);
      int64_t step = 0;
      return time_call([&] {
        kc::adamw_update(p.data(), g.data(), m.data(), v.data(), d0, 1e-3f, 0.9f, 0.95f, 1e-8f,
                         0.1f, ++step);
      });
    }
  }
  return 0;
}

// Time of a differentiable op and its backward on one-element tensors: what dispatch, autograd
// and allocation add to each kernel call, per call.
double op_overhead_seconds() {
  using namespace trident;
  Tensor a = Tensor::from_vector(std::vector<float>{1.0f}, {1});
  a.requires_grad_(true);
  Tensor b = Tensor::from_vector(std::vector<float>{2.0f}, {1});
  return time_call([&] {
           Tensor y = ops::sum(ops::add(ops::mul(a, b), b));
           y.backward();
           a.zero_grad();
         }) /
         6.0;  // three ops forward, three backward
}

// A calibration's kernels_s object as the table TableCostModel prices from.
std::map<std::string, double> kernel_table(const json& kernels_s) {
  std::map<std::string, double> table;
  for (const auto& [key, v] : kernels_s.items()) table[key] = v.get<double>();
  return table;
}

// One real micro-batch through the framework against the sum of its kernels timed alone.
struct StepAnchor {
  int64_t batch = 0;
  double measured_s = 0, kernels_s = 0;
};

// Times the library's GPT forward + backward (loss, backward; fastest of 3 after a warm-up) on
// the largest micro-batch dividing the global batch whose kernels add up to at most a second
// (at least one sequence), and prices the same micro-batch with `table`.
StepAnchor measure_step_anchor(const tp::ModelShape& m, const tp::TrainingSetup& s,
                               const tp::TableCostModel& table) {
  StepAnchor a;
  for (int64_t b = 1; b <= s.global_batch; ++b) {
    if (s.global_batch % b != 0) continue;
    double sum = 0;
    for (const auto& call :
         tp::micro_batch_kernels(m, 1, b, s.seq_len, m.layers, true, true, s.flash_attention))
      sum += table.seconds(call);
    if (a.batch > 0 && sum > 1.0) break;
    a.batch = b, a.kernels_s = sum;
  }
  trident::models::GPTConfig cfg;
  cfg.vocab_size = m.vocab, cfg.block_size = m.context, cfg.n_layer = m.layers;
  cfg.n_head = m.heads, cfg.n_embd = m.width, cfg.dropout = 0.0f;
  trident::models::GPT gpt(cfg, 1);
  std::vector<int32_t> ids(static_cast<size_t>(a.batch * s.seq_len));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919) % m.vocab);
  const trident::Tensor x = trident::Tensor::from_vector(ids, {a.batch, s.seq_len});
  std::rotate(ids.begin(), ids.begin() + 1, ids.end());
  const trident::Tensor y = trident::Tensor::from_vector(ids, {a.batch, s.seq_len});
  auto once = [&] {
    const auto t0 = Clock::now();
    trident::Tensor loss = gpt.loss(x, y);
    loss.backward();
    const double t = seconds_since(t0);
    gpt.zero_grad();
    return t;
  };
  once();  // warm-up
  a.measured_s = std::min({once(), once(), once()});
  return a;
}

// Records every kernel call the plan prices (priced by the roofline meanwhile).
class RecordingCostModel : public tp::KernelCostModel {
 public:
  RecordingCostModel(const tp::Hardware& hw, tp::Precision p) : roofline_(hw, p) {}
  double seconds(const tp::KernelCall& call) const override {
    calls_.emplace(call.key(), call);
    return roofline_.seconds(call);
  }
  const std::map<std::string, tp::KernelCall>& calls() const { return calls_; }

 private:
  tp::RooflineCostModel roofline_;
  mutable std::map<std::string, tp::KernelCall> calls_;
};

struct LinkFit {
  double latency_s = 0, bus_bandwidth = 0, p2p_bandwidth = 0;
  std::vector<tp::LinkBand> collective_bands, p2p_bands;
  json samples = json::array();
};

json bands_json(const std::vector<tp::LinkBand>& bands) {
  json out = json::array();
  for (const auto& b : bands)
    out.push_back(
        {{"max_bytes", b.max_bytes}, {"latency_s", b.latency_s}, {"bandwidth", b.bandwidth}});
  return out;
}

std::vector<tp::LinkBand> bands_from_json(const json& j) {
  std::vector<tp::LinkBand> out;
  for (const auto& b : j)
    out.push_back({b.at("max_bytes").get<double>(), b.at("latency_s").get<double>(),
                   b.at("bandwidth").get<double>()});
  return out;
}

// Fits t = a + b S to measured (S, t) by least squares on the relative error (weights 1/t^2),
// so small and large messages count alike; a negative intercept falls back to the smallest
// message's time.
std::pair<double, double> fit_alpha_beta(const std::vector<double>& S,
                                         const std::vector<double>& t) {
  double W = 0, Sx = 0, Sy = 0, Sxx = 0, Sxy = 0;
  for (size_t i = 0; i < S.size(); ++i) {
    const double w = 1.0 / (t[i] * t[i]);
    W += w, Sx += w * S[i], Sy += w * t[i], Sxx += w * S[i] * S[i], Sxy += w * S[i] * t[i];
  }
  double b = (W * Sxy - Sx * Sy) / (W * Sxx - Sx * Sx);
  double a = (Sy - b * Sx) / W;
  if (a <= 0 || b <= 0) {
    a = t.front();
    std::vector<double> slopes;
    for (size_t i = 1; i < S.size(); ++i)
      slopes.push_back(std::max(t[i] - a, 1e-9) / (S[i] - S.front()));
    b = median(slopes);
  }
  return {a, b};
}

// All-reduce and ping-pong between world ranks 0 and 1 (every rank takes part in the
// all-reduces; ranks above 1 only in those), 4 B to 16 MB, medians of repeats. Fitted as
// all-reduce over n ranks 2(n-1) alpha + 2(n-1)/n S / beta and ping-pong one way
// alpha' + S / beta_p2p, and as alpha-beta bands between neighbouring sizes (fit_link_bands).
LinkFit measure_links(trident::MpiCommunicator& world) {
  using trident::DType;
  using trident::ReduceOp;
  LinkFit fit;
  const int n = world.size(), me = world.rank();
  std::vector<double> ar_s, pp_s, sizes;
  for (int64_t count : {int64_t{1}, int64_t{1} << 8, int64_t{1} << 12, int64_t{1} << 14,
                        int64_t{1} << 16, int64_t{1} << 18, int64_t{1} << 20, int64_t{1} << 22}) {
    std::vector<float> buf(static_cast<size_t>(count), 1.0f);
    std::vector<double> ar, ping;
    const int reps = count >= (1 << 20) ? 7 : 25;
    world.barrier();
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      world.all_reduce(buf.data(), buf.size(), DType::F32, ReduceOp::Sum);
      ar.push_back(seconds_since(t0));
    }
    world.barrier();
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      if (me == 0) {
        world.send(buf.data(), buf.size(), DType::F32, 1, 7);
        world.recv(buf.data(), buf.size(), DType::F32, 1, 8);
      } else if (me == 1) {
        world.recv(buf.data(), buf.size(), DType::F32, 0, 7);
        world.send(buf.data(), buf.size(), DType::F32, 0, 8);
      }
      ping.push_back(seconds_since(t0) / 2);
    }
    // Rank 0's view, shared so every rank fits the same numbers.
    double m[2] = {median(ar), median(ping)};
    world.broadcast(m, 2, DType::F64, 0);
    const double bytes = 4.0 * static_cast<double>(count);
    sizes.push_back(bytes);
    ar_s.push_back(m[0]);
    pp_s.push_back(m[1]);
    fit.samples.push_back(
        {{"bytes", bytes}, {"all_reduce_s", m[0]}, {"ping_pong_one_way_s", m[1]}});
  }
  const auto [a, b] = fit_alpha_beta(sizes, ar_s);
  fit.latency_s = a / (2.0 * (n - 1));
  fit.bus_bandwidth = 2.0 * (n - 1) / n / b;
  fit.p2p_bandwidth = 1.0 / fit_alpha_beta(sizes, pp_s).second;
  fit.collective_bands = tp::fit_link_bands(sizes, ar_s, n);
  fit.p2p_bands = tp::fit_link_bands(sizes, pp_s, 0);
  return fit;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct Args {
  std::string model = "gpt2", preset = "perlmutter", precision, schedule = "1f1b", attention;
  int64_t vocab = 0, block = 0, layers = 0, heads = 0, width = 0;
  int64_t global_batch = 0, seq = 1024, max_micro_batches = 0;  // batch 0: 512 (--kernels: 8)
  int gpus = 8, gpus_per_node = 0, cores = -1, top = 20;
  double gpu_memory_gb = 0, peak_tflops = 0, mem_bw_gbs = 0, matmul_eff = 0;
  double intra_bw = 0, intra_lat_us = 0, inter_bw = 0, inter_lat_us = 0, overlap_factor = -1;
  double bucket_mb = 25;
  bool no_overlap = false, no_clip = false, as_json = false, calibrate = false;
  std::string calibration_in, calibration_out;
  bool apply_step_factor = false;  // scale by the calibration's measured step factor
  bool kernels = false;            // the kernel-level step model instead of layouts
};

tp::ModelShape model_shape(const Args& a) {
  const trident::models::GPTConfig c = trident::models::GPTConfig::preset(a.model);
  tp::ModelShape m;
  m.name = a.model;
  m.vocab = a.vocab > 0 ? a.vocab : c.vocab_size;
  m.context = a.block > 0 ? a.block : c.block_size;
  m.layers = a.layers > 0 ? a.layers : c.n_layer;
  m.heads = a.heads > 0 ? a.heads : c.n_head;
  m.width = a.width > 0 ? a.width : c.n_embd;
  if (a.vocab || a.block || a.layers || a.heads || a.width) m.name += " (resized)";
  return m;
}

void apply_overrides(const Args& a, tp::Hardware& h) {
  if (a.gpus_per_node > 0) h.gpus_per_node = a.gpus_per_node;
  if (a.cores >= 0) h.cores = a.cores;
  if (a.gpu_memory_gb > 0) h.memory_bytes = a.gpu_memory_gb * 1e9;
  if (a.peak_tflops > 0) h.peak_flops_bf16 = h.peak_flops_fp32 = a.peak_tflops * 1e12;
  if (a.mem_bw_gbs > 0) h.memory_bandwidth = a.mem_bw_gbs * 1e9;
  if (a.matmul_eff > 0) h.matmul_efficiency = a.matmul_eff;
  if (a.intra_bw > 0) h.intra.bus_bandwidth = h.intra.p2p_bandwidth = a.intra_bw * 1e9;
  if (a.intra_lat_us > 0) h.intra.latency_s = a.intra_lat_us * 1e-6;
  if (a.inter_bw > 0) h.inter.bus_bandwidth = h.inter.p2p_bandwidth = a.inter_bw * 1e9;
  if (a.inter_lat_us > 0) h.inter.latency_s = a.inter_lat_us * 1e-6;
  if (a.overlap_factor >= 0) h.comm_overlap = a.overlap_factor;
}

// A calibration file's machine numbers replace the preset's.
void apply_calibration(const json& cal, tp::Hardware& h) {
  const json& m = cal.at("machine_model");
  // Peak: the fastest GEMM measured, so MFU stays a share of what the machine reached; the
  // efficiency brings the roofline's rate for unmeasured GEMMs to the FLOP-weighted average.
  const double avg = m.at("gemm_flops").get<double>();
  h.peak_flops_fp32 = std::max(avg, m.value("gemm_peak_flops", avg));
  h.matmul_efficiency = avg / h.peak_flops_fp32;
  h.memory_bandwidth = m.at("memory_bandwidth").get<double>();
  h.kernel_overhead_s = m.at("kernel_overhead_s").get<double>();
  if (m.contains("link")) {
    const json& l = m.at("link");
    h.intra = {l.at("latency_s").get<double>(), l.at("bus_bandwidth").get<double>(),
               l.at("p2p_bandwidth").get<double>()};
    if (l.contains("collective_bands")) {
      h.intra.collective_bands = bands_from_json(l.at("collective_bands"));
      h.intra.p2p_bands = bands_from_json(l.at("p2p_bands"));
    }
    h.inter = h.intra;
  }
  h.calibrated_ranks = cal.value("ranks", 1);
  h.description += trident::str_cat(" [calibrated ", cal.value("date", std::string("?")), " with ",
                                    h.calibrated_ranks, " rank", h.calibrated_ranks == 1 ? "" : "s",
                                    " at once]");
}

json hardware_json(const tp::Hardware& h) {
  auto link = [](const tp::Link& l) {
    json j = {{"latency_us", l.latency_s * 1e6},
              {"bus_bandwidth_GBs", l.bus_bandwidth / 1e9},
              {"p2p_bandwidth_GBs", l.p2p_bandwidth / 1e9}};
    if (!l.collective_bands.empty()) j["collective_bands"] = bands_json(l.collective_bands);
    if (!l.p2p_bands.empty()) j["p2p_bands"] = bands_json(l.p2p_bands);
    return j;
  };
  return {{"name", h.name},
          {"description", h.description},
          {"memory_GB", h.memory_bytes / 1e9},
          {"reserved_GB", h.reserved_bytes / 1e9},
          {"peak_tflops_bf16", h.peak_flops_bf16 / 1e12},
          {"peak_tflops_fp32", h.peak_flops_fp32 / 1e12},
          {"matmul_efficiency", h.matmul_efficiency},
          {"memory_bandwidth_GBs", h.memory_bandwidth / 1e9},
          {"kernel_overhead_us", h.kernel_overhead_s * 1e6},
          {"gpus_per_node", h.gpus_per_node},
          {"intra", link(h.intra)},
          {"inter", link(h.inter)},
          {"comm_overlap", h.comm_overlap},
          {"cores", h.cores},
          {"calibrated_ranks", h.calibrated_ranks}};
}

json prediction_json(const tp::Prediction& p, int rank) {
  const auto& l = p.layout;
  json j = {
      {"rank", rank},          {"dp", l.dp}, {"tp", l.tp}, {"pp", l.pp}, {"feasible", p.feasible},
      {"layout", l.describe()}};
  if (!p.reason.empty()) j["reason"] = p.reason;
  if (l.micro_batches == 0) return j;
  const auto& t = p.time;
  const auto& m = p.memory;
  j.update({{"micro_batches", l.micro_batches},
            {"micro_batch_size", l.micro_batch_size},
            {"zero", l.zero ? 1 : 0},
            {"step_ms", 1e3 * t.step},
            {"compute_ms", 1e3 * t.compute},
            {"tp_comm_ms", 1e3 * t.tp_comm},
            {"pp_comm_ms", 1e3 * t.pp_comm},
            {"bubble_ms", 1e3 * t.bubble},
            {"dp_comm_ms", 1e3 * t.dp_comm},
            {"dp_exposed_ms", 1e3 * t.dp_exposed},
            {"syncs_ms", 1e3 * t.syncs},
            {"optimizer_ms", 1e3 * t.optimizer},
            {"time_share", t.time_share},
            {"tokens_per_s", p.tokens_per_s},
            {"mfu", p.mfu},
            {"memory",
             {{"stage", m.stage},
              {"params", m.params},
              {"in_flight_micro_batches", m.in_flight},
              {"weights_bytes", m.weights},
              {"grads_bytes", m.grads},
              {"optimizer_bytes", m.optimizer},
              {"activations_bytes", m.activations},
              {"reserved_bytes", m.reserved},
              {"total_bytes", m.total()},
              {"stage_total_bytes", m.stage_totals}}}});
  return j;
}

void print_table(const std::vector<tp::Prediction>& preds, const tp::ModelShape& m,
                 const tp::Hardware& h, const tp::TrainingSetup& s, int top) {
  std::printf(
      "trident-planner: %s: %.1fM parameters (%lld layers, %lld heads, width %lld, vocab %lld, "
      "context %lld)\n",
      m.name.c_str(), static_cast<double>(m.num_parameters()) / 1e6,
      static_cast<long long>(m.layers), static_cast<long long>(m.heads),
      static_cast<long long>(m.width), static_cast<long long>(m.vocab),
      static_cast<long long>(m.context));
  const int nodes = (s.world_size + h.gpus_per_node - 1) / h.gpus_per_node;
  std::printf("machine: %d GPUs (%d node%s) of %s: %s\n", s.world_size, nodes,
              nodes == 1 ? "" : "s", h.name.c_str(), h.description.c_str());
  std::printf(
      "step: %lld sequences x %lld tokens, %s, %s attention, %s schedule, %.0f MiB buckets, "
      "overlap %s, clip %s\n",
      static_cast<long long>(s.global_batch), static_cast<long long>(s.seq_len),
      tp::precision_name(s.precision), s.flash_attention ? "flash" : "naive", s.schedule.c_str(),
      s.bucket_bytes / (1 << 20), s.overlap ? "on" : "off", s.grad_clip ? "on" : "off");
  std::printf("\n%4s %3s %3s %3s %4s %4s %4s %9s %9s %8s %8s %8s %14s %8s %9s %10s %5s\n", "rank",
              "dp", "tp", "pp", "m", "b", "zero", "step ms", "compute", "tp comm", "pp comm",
              "bubble", "dp comm (exp)", "optim", "mem/GPU", "tok/s", "MFU");
  int shown = 0, feasible = 0;
  for (const auto& p : preds) {
    if (!p.feasible) continue;
    ++feasible;
    if (top > 0 && shown >= top) continue;
    ++shown;
    const auto& l = p.layout;
    const auto& t = p.time;
    char dpc[32];
    std::snprintf(dpc, sizeof dpc, "%.1f (%.1f)", 1e3 * t.dp_comm, 1e3 * (t.dp_exposed + t.syncs));
    std::printf(
        "%4d %3d %3d %3d %4lld %4lld %4s %9.1f %9.1f %8.1f %8.1f %8.1f %14s %8.1f %9s %10.0f "
        "%4.0f%%\n",
        shown, l.dp, l.tp, l.pp, static_cast<long long>(l.micro_batches),
        static_cast<long long>(l.micro_batch_size), l.zero ? "1" : "-", 1e3 * t.step,
        1e3 * t.compute, 1e3 * t.tp_comm, 1e3 * t.pp_comm, 1e3 * t.bubble, dpc, 1e3 * t.optimizer,
        tp::format_gb(p.memory.total()).c_str(), p.tokens_per_s, 100 * p.mfu);
  }
  if (feasible == 0) std::printf("(no feasible layout)\n");
  if (feasible > shown)
    std::printf("... %d more feasible layouts (--top 0 lists all)\n", feasible - shown);
  const size_t infeasible = preds.size() - static_cast<size_t>(feasible);
  if (infeasible > 0) {
    std::printf("\ninfeasible (%zu):\n", infeasible);
    int listed = 0;
    for (const auto& p : preds) {
      if (p.feasible) continue;
      if (top > 0 && listed >= top) {
        std::printf("  ... %zu more (--top 0 lists all)\n",
                    infeasible - static_cast<size_t>(listed));
        break;
      }
      ++listed;
      std::printf("  %-40s %s\n", p.layout.describe().c_str(), p.reason.c_str());
    }
  }
  if (feasible > 0) {
    const auto& b = preds.front();
    std::printf("\nbest: %s: %.1f ms/step, %.0f tokens/s, %s per GPU (stage %d), MFU %.0f%%\n",
                b.layout.describe().c_str(), 1e3 * b.time.step, b.tokens_per_s,
                tp::format_gb(b.memory.total()).c_str(), b.memory.stage, 100 * b.mfu);
  }
}

// Measures every kernel call the plans for 1 .. --gpus ranks (each world size dividing it)
// price, and the links; returns the calibration document. Every rank measures at the same time
// (as ranks share the machine in training); the table holds the mean over ranks.
json calibrate(const tp::ModelShape& model, const tp::Hardware& hw, const tp::TrainingSetup& setup,
               trident::MpiCommunicator& world) {
  RecordingCostModel rec(hw, setup.precision);
  for (int w = 1; w <= setup.world_size; ++w) {
    if (setup.world_size % w != 0) continue;
    tp::TrainingSetup s = setup;
    s.world_size = w;
    tp::plan(model, hw, s, rec);
  }
  const double overhead = op_overhead_seconds();
  std::vector<double> secs;
  std::vector<std::string> keys;
  for (const auto& [key, call] : rec.calls()) {
    keys.push_back(key);
    secs.push_back(measure_kernel(call) + overhead);
  }
  world.all_reduce(secs.data(), secs.size(), trident::DType::F64, trident::ReduceOp::Avg);
  double gemm_flops = 0, gemm_s = 0, gemm_peak = 0, adam_n = 0, adam_s = 0;
  json table = json::object();
  size_t i = 0;
  for (const auto& [key, call] : rec.calls()) {
    table[key] = secs[i];
    if (call.kernel == tp::Kernel::Gemm) {
      gemm_flops += call.flops(), gemm_s += secs[i] - overhead;
      gemm_peak = std::max(gemm_peak, call.flops() / (secs[i] - overhead));
    }
    if (call.kernel == tp::Kernel::AdamW && static_cast<double>(call.d0) > adam_n)
      adam_n = static_cast<double>(call.d0), adam_s = secs[i] - overhead;
    ++i;
  }
  // The framework's own share: a real micro-batch against its kernels (every rank at once, as
  // the kernels were timed), averaged over the ranks.
  const StepAnchor anchor = measure_step_anchor(
      model, setup, tp::TableCostModel(kernel_table(table), hw, setup.precision));
  double anchor_s[2] = {anchor.measured_s, anchor.kernels_s};
  world.all_reduce(anchor_s, 2, trident::DType::F64, trident::ReduceOp::Avg);
  json mm = {{"gemm_flops", gemm_s > 0 ? gemm_flops / gemm_s : hw.peak_flops_fp32},
             {"memory_bandwidth", adam_s > 0 ? 28.0 * adam_n / adam_s : hw.memory_bandwidth},
             {"gemm_peak_flops", gemm_peak > 0 ? gemm_peak : hw.peak_flops_fp32},
             {"kernel_overhead_s", overhead},
             {"step_factor", anchor_s[0] / anchor_s[1]},
             {"step_anchor",
              {{"micro_batch", anchor.batch},
               {"seq", setup.seq_len},
               {"measured_s", anchor_s[0]},
               {"kernels_s", anchor_s[1]}}}};
  json links;
  if (world.size() > 1) {
    const LinkFit f = measure_links(world);
    mm["link"] = {{"latency_s", f.latency_s},
                  {"bus_bandwidth", f.bus_bandwidth},
                  {"p2p_bandwidth", f.p2p_bandwidth},
                  {"collective_bands", bands_json(f.collective_bands)},
                  {"p2p_bands", bands_json(f.p2p_bands)}};
    links = f.samples;
  }
  return {{"date", utc_now()},
          {"ranks", world.size()},
          {"machine_model", mm},
          {"link_samples", links},
          {"kernels_s", table},
          {"note",
           "kernels_s: seconds per call, the library's f32 CPU kernel at that shape on one thread "
           "(fastest of 5 timed batches, mean over the ranks measuring at once) plus the measured "
           "per-op dispatch overhead; gemm_flops: FLOP-weighted GEMM rate over those shapes "
           "(gemm_peak_flops: the fastest shape's, the peak MFU is counted against); "
           "memory_bandwidth: 28 bytes per parameter of the largest AdamW call / its time; "
           "step_factor: one forward + backward of the library's GPT on step_anchor's micro-batch "
           "(fastest of 3) / the sum of that micro-batch's kernels_s, applied to every forward "
           "and backward kernel with --apply-step-factor"}};
}

std::string phase_tag(const std::string& phase) {
  return phase == "forward" ? "fwd" : phase == "backward" ? "bwd" : "opt";
}

// --kernels: every kernel family of one single-GPU step, current and planned implementation,
// priced on H100 SXM and H200 (parallel/kernel_step_model.hpp). Predictions, not measurements.
int run_kernels(const Args& a) {
  const tp::ModelShape model = model_shape(a);
  const int64_t B = a.global_batch > 0 ? a.global_batch : 8, T = a.seq;
  tp::TrainingSetup s;
  s.global_batch = B, s.seq_len = T, s.world_size = 1;
  tp::check_inputs(model, tp::Hardware::preset("h100"), s);
  const std::vector<tp::GpuPeaks> gpus = {tp::GpuPeaks::h100_sxm(), tp::GpuPeaks::h200()};
  const tp::Implementation impls[] = {tp::Implementation::Current, tp::Implementation::Planned};
  json out = {{"label", "PREDICTION: a roofline model, nothing here was measured on a GPU"},
              {"date", utc_now()},
              {"command", trident::str_cat("trident-planner --kernels --model ", a.model,
                                           " --global-batch ", B, " --seq ", T)},
              {"machine", "none: priced for H100 SXM and H200 from datasheet peaks"},
              {"model",
               {{"name", model.name},
                {"parameters", model.num_parameters()},
                {"layers", model.layers},
                {"heads", model.heads},
                {"width", model.width},
                {"vocab", model.vocab}}},
              {"batch", B},
              {"seq", T},
              {"precision", "bf16"},
              {"gpus", 1},
              {"assumptions", tp::efficiency_sources()},
              {"implementations", json::object()}};
  std::map<std::string, std::map<std::string, double>> family_ms;  // family -> impl -> H100 ms
  std::vector<std::string> families;
  for (const auto impl : impls) {
    const auto kernels = tp::step_kernels(model, B, T, impl);
    json rows = json::array(), steps = json::object();
    for (const auto& k : kernels) {
      json row = {{"kernel", k.name},
                  {"family", k.family},
                  {"phase", k.phase},
                  {"launches", k.launches},
                  {"gflop", k.flops / 1e9},
                  {"mb", k.bytes / 1e6},
                  {"engine", tp::engine_name(k.engine)},
                  {"compute_efficiency", k.compute_efficiency},
                  {"memory_efficiency", k.memory_efficiency},
                  {"matmul", k.matmul}};
      for (const auto& g : gpus) {
        row["ms"][g.name] = 1e3 * k.seconds(g);
        row["bound"][g.name] = k.compute_bound(g) ? "compute" : "memory";
      }
      if (!family_ms.count(k.family)) families.push_back(k.family);
      family_ms[k.family][tp::implementation_name(impl)] += 1e3 * k.seconds(gpus[0]);
      rows.push_back(row);
    }
    for (const auto& g : gpus) {
      const tp::StepPrediction p = tp::predict_step(kernels, model, B, T, g);
      steps[g.name] = {{"step_ms", 1e3 * p.seconds},
                       {"model_gflop", p.model_flops / 1e9},
                       {"mfu", p.mfu},
                       {"tokens_per_s", static_cast<double>(B * T) / p.seconds}};
    }
    out["implementations"][tp::implementation_name(impl)] = {{"kernels", rows}, {"step", steps}};
  }
  if (a.as_json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("trident-planner --kernels: %s, %.1fM parameters, B %lld x T %lld, bf16, one GPU\n",
              model.name.c_str(), static_cast<double>(model.num_parameters()) / 1e6,
              static_cast<long long>(B), static_cast<long long>(T));
  std::printf(
      "PREDICTION (roofline from datasheet peaks and published efficiencies; nothing "
      "measured on a GPU)\n");
  for (const auto impl : impls) {
    const json& im = out["implementations"][tp::implementation_name(impl)];
    std::printf("\n%s implementation\n%-76s %6s %9s %9s %9s %9s %8s\n",
                tp::implementation_name(impl), "kernel", "count", "GFLOP", "MB", "H100 ms",
                "H200 ms", "bound");
    for (const auto& r : im["kernels"]) {
      std::printf(
          "%-76s %6lld %9.1f %9.1f %9.3f %9.3f %8s\n",
          (phase_tag(r["phase"].get<std::string>()) + " " + r["kernel"].get<std::string>()).c_str(),
          r["launches"].get<long long>(), r["gflop"].get<double>(), r["mb"].get<double>(),
          r["ms"]["H100 SXM"].get<double>(), r["ms"]["H200"].get<double>(),
          r["bound"]["H100 SXM"].get<std::string>().c_str());
    }
  }
  std::printf("\nper kernel family, H100 SXM, predicted ms: before (current) -> after (planned)\n");
  for (const auto& f : families)
    std::printf("  %-26s %8.3f -> %8.3f\n", f.c_str(), family_ms[f]["current"],
                family_ms[f]["planned"]);
  std::printf("\n");
  for (const auto& g : gpus) {
    const json& c = out["implementations"]["current"]["step"][g.name];
    const json& p = out["implementations"]["planned"]["step"][g.name];
    std::printf(
        "predicted step on %-8s: current %.2f ms (MFU %.1f%%), planned %.2f ms (MFU %.1f%%)\n",
        g.name.c_str(), c["step_ms"].get<double>(), 100 * c["mfu"].get<double>(),
        p["step_ms"].get<double>(), 100 * p["mfu"].get<double>());
  }
  std::printf("\nassumptions:\n");
  for (const auto& line : tp::efficiency_sources()) std::printf("  - %s\n", line.c_str());
  return 0;
}

int run(const Args& a, trident::MpiCommunicator* world) {
  const tp::ModelShape model = model_shape(a);
  if (a.kernels) return run_kernels(a);
  tp::Hardware hw = tp::Hardware::preset(a.preset);
  apply_overrides(a, hw);
  tp::TrainingSetup s;
  s.global_batch = a.global_batch > 0 ? a.global_batch : 512;
  s.seq_len = a.seq;
  s.world_size = a.gpus;
  const std::string prec =
      a.precision.empty() ? (a.preset == "cpu" ? "fp32" : "bf16") : a.precision;
  s.precision = prec == "bf16" ? tp::Precision::BF16 : tp::Precision::FP32;
  s.schedule = a.schedule;
  s.bucket_bytes = a.bucket_mb * (1 << 20);
  s.overlap = !a.no_overlap;
  s.grad_clip = !a.no_clip;
  s.max_micro_batches = a.max_micro_batches;
  const std::string att =
      a.attention.empty() ? (a.preset == "cpu" ? "naive" : "flash") : a.attention;
  s.flash_attention = att == "flash";
  tp::check_inputs(model, hw, s);

  json cal;
  if (a.calibrate) {
    cal = calibrate(model, hw, s, *world);
    if (world->rank() != 0) return 0;
    if (!a.calibration_out.empty()) {
      std::ofstream f(a.calibration_out);
      TRIDENT_CHECK(f.good(), "--save-calibration ", a.calibration_out, ": cannot write");
      f << cal.dump(2) << "\n";
    }
  } else if (!a.calibration_in.empty()) {
    std::ifstream f(a.calibration_in);
    TRIDENT_CHECK(f.good(), "--calibration ", a.calibration_in, ": cannot open");
    try {
      cal = json::parse(f);
    } catch (const json::exception& e) {
      throw trident::Error(
          trident::str_cat("--calibration ", a.calibration_in, ": not JSON (", e.what(), ")"));
    }
  }
  std::unique_ptr<tp::KernelCostModel> costs;
  // The calibration's measured step factor, and the one applied (1 unless --apply-step-factor).
  double measured_factor = 0, step_factor = 1;
  if (!cal.is_null()) {
    apply_calibration(cal, hw);
    apply_overrides(a, hw);  // flags still win
    measured_factor = cal.at("machine_model").value("step_factor", 0.0);
    if (a.apply_step_factor) {
      TRIDENT_CHECK(measured_factor > 0, "--apply-step-factor: ", a.calibration_in,
                    " holds no step factor (calibrate again with this version)");
      step_factor = measured_factor;
    }
    costs = std::make_unique<tp::TableCostModel>(kernel_table(cal.at("kernels_s")), hw, s.precision,
                                                 step_factor);
  } else {
    costs = std::make_unique<tp::RooflineCostModel>(hw, s.precision);
  }
  const auto preds = tp::plan(model, hw, s, *costs);
  if (a.as_json) {
    json out = {{"model",
                 {{"name", model.name},
                  {"vocab", model.vocab},
                  {"context", model.context},
                  {"layers", model.layers},
                  {"heads", model.heads},
                  {"width", model.width},
                  {"parameters", model.num_parameters()}}},
                {"machine", hardware_json(hw)},
                {"setup",
                 {{"global_batch", s.global_batch},
                  {"seq", s.seq_len},
                  {"gpus", s.world_size},
                  {"precision", tp::precision_name(s.precision)},
                  {"schedule", s.schedule},
                  {"attention", s.flash_attention ? "flash" : "naive"},
                  {"bucket_mb", a.bucket_mb},
                  {"overlap", s.overlap},
                  {"grad_clip", s.grad_clip}}},
                {"layouts", json::array()}};
    int rank = 0;
    for (const auto& p : preds)
      out["layouts"].push_back(prediction_json(p, p.feasible ? ++rank : 0));
    if (const auto* t = dynamic_cast<const tp::TableCostModel*>(costs.get())) {
      out["calibration_misses"] = t->misses();
      out["step_factor_measured"] = measured_factor;
      out["step_factor_applied"] = step_factor;
    }
    if (a.calibrate) out["calibration"] = cal;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    print_table(preds, model, hw, s, a.top);
    if (hw.calibrated_ranks > 0 && hw.cores > 0 &&
        std::min(s.world_size, hw.cores) != std::min(hw.calibrated_ranks, hw.cores)) {
      std::printf(
          "(calibrated with %d rank%s at once, planned for %d: kernels run at a different speed "
          "when a different number of ranks share the machine; calibrate with `mpirun -np %d`)\n",
          hw.calibrated_ranks, hw.calibrated_ranks == 1 ? "" : "s", s.world_size,
          std::min(s.world_size, hw.cores));
    }
    if (const auto* t = dynamic_cast<const tp::TableCostModel*>(costs.get())) {
      if (measured_factor > 0) {
        std::printf(
            "(step factor, a real micro-batch through the framework over its kernels timed "
            "alone: %.3f, %s)\n",
            measured_factor,
            a.apply_step_factor ? "applied to forward and backward kernels"
                                : "not applied (--apply-step-factor)");
      }
      if (t->misses() > 0)
        std::printf("(%zu kernel calls not in the calibration table were priced by the roofline)\n",
                    t->misses());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"trident-planner: rank dp x tp x pp layouts by predicted step time and memory"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  auto* m = app.add_option_group("Model");
  m->add_option("--model", a.model, "Preset: tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl")
      ->capture_default_str();
  m->add_option("--vocab", a.vocab, "Vocabulary size (overrides the preset)");
  m->add_option("--block", a.block, "Context length (overrides the preset)");
  m->add_option("--layers", a.layers, "Transformer blocks (overrides the preset)");
  m->add_option("--heads", a.heads, "Attention heads (overrides the preset)");
  m->add_option("--width", a.width, "Embedding width (overrides the preset)");
  auto* t = app.add_option_group("Training step");
  t->add_option("--global-batch", a.global_batch,
                "Sequences per optimizer step (default 512; --kernels: 8, on one GPU)");
  t->add_option("--seq", a.seq, "Tokens per sequence")->capture_default_str();
  t->add_option("--precision", a.precision, "bf16 or fp32 (default: bf16 on GPUs, fp32 on cpu)")
      ->check(CLI::IsMember({"bf16", "fp32"}));
  t->add_option(
       "--attention", a.attention,
       "flash (fused, default on GPUs) or naive (T x T probabilities kept, the CPU kernel)")
      ->check(CLI::IsMember({"flash", "naive"}));
  t->add_option("--schedule", a.schedule, "Pipeline schedule: 1f1b or gpipe")
      ->check(CLI::IsMember({"1f1b", "gpipe"}))
      ->capture_default_str();
  t->add_option("--bucket-mb", a.bucket_mb, "Gradient bucket size in MiB")->capture_default_str();
  t->add_flag("--no-overlap", a.no_overlap, "Reduce gradients after backward");
  t->add_flag("--no-clip", a.no_clip, "No global-norm gradient clipping");
  t->add_option("--max-micro-batches", a.max_micro_batches,
                "Largest micro-batch count tried (0 = any)");
  auto* h = app.add_option_group("Machine");
  h->add_option("--gpus", a.gpus, "GPUs (ranks) in the job")->capture_default_str();
  h->add_option("--preset", a.preset, "perlmutter, h100 or cpu")->capture_default_str();
  h->add_option("--gpus-per-node", a.gpus_per_node, "GPUs per node (overrides the preset)");
  h->add_option("--cores", a.cores, "Cores the ranks share (0 = a device each; cpu preset: 2)");
  h->add_option("--gpu-memory", a.gpu_memory_gb, "Memory per GPU, GB");
  h->add_option("--peak-tflops", a.peak_tflops, "Peak dense TFLOP/s per GPU at the precision");
  h->add_option("--matmul-efficiency", a.matmul_eff, "Fraction of peak a large GEMM reaches");
  h->add_option("--mem-bw", a.mem_bw_gbs, "Memory bandwidth per GPU, GB/s");
  h->add_option("--intra-bw", a.intra_bw, "Intra-node bandwidth per GPU, GB/s");
  h->add_option("--intra-lat", a.intra_lat_us, "Intra-node latency, microseconds");
  h->add_option("--inter-bw", a.inter_bw, "Inter-node bandwidth per GPU, GB/s");
  h->add_option("--inter-lat", a.inter_lat_us, "Inter-node latency, microseconds");
  h->add_option("--overlap-factor", a.overlap_factor,
                "Fraction of gradient reduction backward can hide (0..1)");
  auto* o = app.add_option_group("Output and calibration");
  o->add_option("--top", a.top, "Layouts shown (0 = all)")->capture_default_str();
  o->add_flag("--json", a.as_json, "Print every layout (or --kernels' table) as JSON");
  o->add_flag("--kernels", a.kernels,
              "Predict one single-GPU step kernel by kernel on H100 SXM and H200, current and "
              "planned CUDA kernels (a roofline prediction, not a measurement)");
  o->add_flag("--calibrate", a.calibrate,
              "Measure this machine's kernels and links first (run under mpirun -np 2 for links)");
  o->add_option("--save-calibration", a.calibration_out, "Write the --calibrate measurements here");
  o->add_option("--calibration", a.calibration_in, "Plan with the measurements in this file");
  o->add_flag("--apply-step-factor", a.apply_step_factor,
              "With --calibration: scale forward/backward kernels by the calibration's measured "
              "step factor (off: kernels as timed alone)");
  CLI11_PARSE(app, argc, argv);
  if (!a.calibrate) {
    try {
      return run(a, nullptr);
    } catch (const trident::Error& e) {
      std::fprintf(stderr, "trident-planner: error: %s\n", e.what());
      return 1;
    }
  }
  trident::MpiRuntime mpi(&argc, &argv);
  return trident::run_guarded([&] {
    auto world = trident::MpiCommunicator::world();
    return run(a, world.get());
  });
}
