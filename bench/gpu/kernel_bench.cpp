// trident-bench-gpu-kernels: Trident's CUDA kernels through the Backend op table, timed with
// CUDA events on the backend's compute stream (median of --reps after --warmup runs, fresh
// random inputs, never zeros). Writes one JSON document (--out) and prints a short table.
//
//   copy       device-to-device cudaMemcpy of 1 GiB: the bandwidth ceiling (bytes read + written)
//   attention  causal flash attention forward and backward, bf16, B=8 NH=12 HD=64, T=1024, 2048;
//              FLOPs counted as FlashAttention does: forward 4 B NH T^2 HD / 2 (causal),
//              backward 2.5 x forward
//   memory     layernorm, fused residual + layernorm, GELU, AdamW (fp32 state) and cross-entropy
//              at GPT-2 124M shapes (B=8, T=1024): achieved GB/s over the fewest bytes each must
//              move
//   breakdown  every op of one GPT-2 124M bf16 training step (B=8, T=1024, 12 layers), each timed
//              once per shape and multiplied by its count per step
// An op the backend lacks, or that fails, is recorded as {"missing": "<error>"}; the rest runs.
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "../bench_util.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/error.hpp"

namespace {

using trident::Backend;
using trident::DType;
using json = nlohmann::json;

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw trident::Error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// A device buffer (RAII), filled with uniform random values in [-1, 1) of its dtype.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes) : bytes_(bytes) { check(cudaMalloc(&p_, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

struct Bench {
  Backend& be;
  cudaStream_t stream;
  int warmup;
  int reps;
  std::mt19937_64 rng{1234};

  // Random floats in [lo, hi) converted on the device to `t`.
  std::unique_ptr<DeviceBuffer> random(DType t, int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> host(static_cast<size_t>(n));
    std::uniform_real_distribution<float> dist(lo, hi);
    for (float& x : host) x = dist(rng);
    auto buf = std::make_unique<DeviceBuffer>(static_cast<size_t>(n) * trident::dtype_size(t));
    if (t == DType::F32) {
      check(cudaMemcpy(buf->get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice), "upload");
    } else {
      DeviceBuffer f32(host.size() * 4);
      check(cudaMemcpy(f32.get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice), "upload");
      be.convert(t, buf->get(), DType::F32, f32.get(), n);
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
    return buf;
  }
  std::unique_ptr<DeviceBuffer> random_ids(int64_t n, int64_t below) {
    std::vector<int32_t> host(static_cast<size_t>(n));
    std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(below - 1));
    for (int32_t& x : host) x = dist(rng);
    auto buf = std::make_unique<DeviceBuffer>(host.size() * 4);
    check(cudaMemcpy(buf->get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice), "upload");
    return buf;
  }
  std::unique_ptr<DeviceBuffer> empty(DType t, int64_t n) {
    return std::make_unique<DeviceBuffer>(static_cast<size_t>(n) * trident::dtype_size(t));
  }

  // Median milliseconds of `fn` on the compute stream.
  double time_ms(const std::function<void()>& fn) {
    cudaEvent_t a, b;
    check(cudaEventCreate(&a), "cudaEventCreate");
    check(cudaEventCreate(&b), "cudaEventCreate");
    for (int i = 0; i < warmup; ++i) fn();
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      check(cudaEventRecord(a, stream), "cudaEventRecord");
      fn();
      check(cudaEventRecord(b, stream), "cudaEventRecord");
      check(cudaEventSynchronize(b), "cudaEventSynchronize");
      float t = 0;
      check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
      ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    check(cudaGetLastError(), "kernel launch");
    return trident::bench::median(ms);
  }
};

// Runs `body` and returns its JSON, or {"missing": what} when it throws.
json guarded(const char* name, const std::function<json()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: missing: %s\n", name, e.what());
    cudaGetLastError();
    return {{"missing", e.what()}};
  }
}

json bench_copy(Bench& b) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src(bytes), dst(bytes);
  check(cudaMemset(src.get(), 1, bytes), "cudaMemset");
  const double ms = b.time_ms([&] {
    check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, b.stream), "copy");
  });
  return {{"bytes", bytes}, {"ms", ms}, {"gb_per_s", 2.0 * static_cast<double>(bytes) / ms / 1e6}};
}

json bench_attention(Bench& b, int64_t T) {
  const int64_t B = 8, NH = 12, HD = 64, C = NH * HD;
  const DType t = DType::BF16;
  auto qkv = b.random(t, B * T * 3 * C);
  auto dout = b.random(t, B * T * C);
  auto out = b.empty(t, B * T * C);
  auto dqkv = b.empty(t, B * T * 3 * C);
  auto saved = b.empty(t, b.be.attention_saved_elements(t, B, T, C, NH));
  const auto fwd = [&] {
    b.be.attention_forward(t, out->get(), saved->get(), qkv->get(), B, T, C, NH);
  };
  const auto bwd = [&] {
    b.be.attention_backward(t, dqkv->get(), dout->get(), qkv->get(), out->get(), saved->get(), B, T,
                            C, NH);
  };
  const double fwd_ms = b.time_ms(fwd);
  fwd();
  const double bwd_ms = b.time_ms(bwd);
  const double both_ms = b.time_ms([&] {
    fwd();
    bwd();
  });
  const double fwd_flops = 4.0 * B * NH * static_cast<double>(T) * T * HD / 2;
  return {{"B", B},
          {"T", T},
          {"NH", NH},
          {"HD", HD},
          {"dtype", "bf16"},
          {"fwd_ms", fwd_ms},
          {"bwd_ms", bwd_ms},
          {"fwd_bwd_ms", both_ms},
          {"fwd_tflops", fwd_flops / fwd_ms / 1e9},
          {"fwd_bwd_tflops", 3.5 * fwd_flops / both_ms / 1e9}};
}

json bandwidth(double ms, double bytes) {
  return {{"ms", ms}, {"bytes", bytes}, {"gb_per_s", bytes / ms / 1e6}};
}

json bench_memory(Bench& b) {
  const int64_t N = 8 * 1024, C = 768, V = 50257, G = N * 4 * C;
  const DType t = DType::BF16;
  const double es = 2;
  json r;
  r["layernorm"] = guarded("layernorm", [&] {
    auto inp = b.random(t, N * C), w = b.random(t, C), bias = b.random(t, C);
    auto out = b.empty(t, N * C), mean = b.empty(DType::F32, N), rstd = b.empty(DType::F32, N);
    auto dout = b.random(t, N * C), dinp = b.empty(t, N * C);
    auto dw = b.empty(DType::F32, C), db = b.empty(DType::F32, C);
    const auto fwd = [&] {
      b.be.layernorm_forward(t, out->get(), mean->get(), rstd->get(), inp->get(), w->get(),
                             bias->get(), N, C, 1e-5);
    };
    const double f = b.time_ms(fwd);
    fwd();
    const double g = b.time_ms([&] {
      b.be.layernorm_backward(t, dinp->get(), dw->get(), db->get(), dout->get(), inp->get(),
                              w->get(), mean->get(), rstd->get(), N, C);
    });
    return json{{"shape", {N, C}},
                {"forward", bandwidth(f, 2 * es * N * C)},
                {"backward", bandwidth(g, 3 * es * N * C)}};
  });
  r["residual_layernorm"] = guarded("residual_layernorm", [&] {
    auto x = b.random(t, N * C), delta = b.random(t, N * C), w = b.random(t, C),
         bias = b.random(t, C);
    auto res = b.empty(t, N * C), out = b.empty(t, N * C), mean = b.empty(DType::F32, N),
         rstd = b.empty(DType::F32, N);
    auto dout = b.random(t, N * C), dres = b.random(t, N * C);
    auto dw = b.empty(DType::F32, C), db = b.empty(DType::F32, C);
    const auto fwd = [&] {
      b.be.residual_layernorm_forward(t, res->get(), out->get(), mean->get(), rstd->get(), x->get(),
                                      delta->get(), w->get(), bias->get(), N, C, 1e-5);
    };
    const double f = b.time_ms(fwd);
    fwd();
    // In place, as the GPT block runs it: dres += the layer norm's input gradient.
    const double g = b.time_ms([&] {
      b.be.residual_layernorm_backward(t, dres->get(), dw->get(), db->get(), dres->get(),
                                       dout->get(), res->get(), w->get(), mean->get(), rstd->get(),
                                       N, C);
    });
    return json{{"shape", {N, C}},
                {"forward", bandwidth(f, 4 * es * N * C)},
                {"backward", bandwidth(g, 4 * es * N * C)}};
  });
  r["gelu"] = guarded("gelu", [&] {
    auto inp = b.random(t, G), dout = b.random(t, G), out = b.empty(t, G), dinp = b.empty(t, G);
    const double f = b.time_ms([&] { b.be.gelu_forward(t, out->get(), inp->get(), G); });
    const double g =
        b.time_ms([&] { b.be.gelu_backward(t, dinp->get(), inp->get(), dout->get(), G); });
    return json{
        {"n", G}, {"forward", bandwidth(f, 2 * es * G)}, {"backward", bandwidth(g, 3 * es * G)}};
  });
  r["adamw"] = guarded("adamw", [&] {
    const int64_t P = 124439808;  // GPT-2 124M parameters
    auto p = b.random(DType::F32, P), grad = b.random(DType::F32, P);
    auto m = b.random(DType::F32, P, 0.0f, 0.01f), v = b.random(DType::F32, P, 0.0f, 0.01f);
    int64_t step = 1;
    const double ms = b.time_ms([&] {
      b.be.adamw_update(p->as<float>(), grad->as<float>(), m->as<float>(), v->as<float>(), P, 1e-4f,
                        0.9f, 0.95f, 1e-8f, 0.1f, step++);
    });
    return json{{"n", P}, {"update", bandwidth(ms, 28.0 * P)}};  // read p g m v, write p m v
  });
  r["cross_entropy"] = guarded("cross_entropy", [&] {
    auto logits = b.random(t, N * V, -4.0f, 4.0f), targets = b.random_ids(N, V);
    // losses, lse and dlosses are f32 (stats_dtype) for bf16 logits.
    auto losses = b.empty(DType::F32, N), lse = b.empty(DType::F32, N);
    auto dlosses = b.random(DType::F32, N), dlogits = b.empty(t, N * V);
    const auto fwd = [&] {
      b.be.cross_entropy_forward(t, losses->get(), lse->get(), logits->get(),
                                 targets->as<int32_t>(), N, V);
    };
    const double f = b.time_ms(fwd);
    fwd();
    const double g = b.time_ms([&] {
      b.be.cross_entropy_backward(t, dlogits->get(), logits->get(), lse->get(),
                                  targets->as<int32_t>(), dlosses->get(), N, V, 0);
    });
    return json{{"shape", {N, V}},
                {"forward", bandwidth(f, es * N * V)},
                {"backward", bandwidth(g, 2 * es * N * V)}};
  });
  return r;
}

// One GPT-2 124M training step, op by op: {"ops": [{name, ms, count, total_ms}], "total_ms"}.
json bench_breakdown(Bench& b) {
  // The head and the classifier over the padded vocabulary, as trident-train runs GPT-2 on CUDA.
  const int64_t B = 8, T = 1024, N = B * T, C = 768, L = 12, NH = 12, vocab = 50257, V = 50304;
  const DType t = DType::BF16;
  json ops = json::array();
  double total = 0;
  const auto add = [&](const std::string& name, int64_t count, const std::function<double()>& run) {
    json row = guarded(name.c_str(), [&] { return json{{"ms", run()}}; });
    row["name"] = name;
    row["count"] = count;
    if (row.contains("ms")) {
      row["total_ms"] = row["ms"].get<double>() * static_cast<double>(count);
      total += row["total_ms"].get<double>();
    }
    ops.push_back(row);
  };
  // Linear y (N, out) = x (N, in) W^T: forward one GEMM, backward dx and dW.
  const auto linear = [&](const std::string& name, int64_t in, int64_t out, int64_t count) {
    auto x = b.random(t, N * in), w = b.random(t, out * in, -0.05f, 0.05f);
    auto y = b.random(t, N * out), dx = b.empty(t, N * in), dw = b.empty(t, out * in);
    add(name + " forward (matmul)", count, [&] {
      return b.time_ms([&] {
        b.be.gemm_batched(t, false, true, 1, N, out, in, 1.0, x->get(), in, 0, w->get(), in, 0, 0.0,
                          y->get(), out, 0);
      });
    });
    add(name + " backward (2 matmuls)", count, [&] {
      return b.time_ms([&] {
        b.be.gemm_batched(t, false, false, 1, N, in, out, 1.0, y->get(), out, 0, w->get(), in, 0,
                          0.0, dx->get(), in, 0);
        b.be.gemm_batched(t, true, false, 1, out, in, N, 1.0, y->get(), out, 0, x->get(), in, 0,
                          0.0, dw->get(), in, 0);
      });
    });
  };
  {
    auto ids = b.random_ids(N, vocab);
    auto table = b.random(t, V * C), out = b.empty(t, N * C), dtable = b.empty(t, V * C);
    add("embedding forward", 2, [&] {
      return b.time_ms([&] {
        b.be.embedding_forward(t, out->get(), ids->as<int32_t>(), table->get(), N, V, C, 0, V);
      });
    });
    add("embedding backward", 2, [&] {
      return b.time_ms([&] {
        b.be.embedding_backward(t, dtable->get(), out->get(), ids->as<int32_t>(), N, V, C, 0, V,
                                false);
      });
    });
  }
  {
    auto inp = b.random(t, N * C), w = b.random(t, C), bias = b.random(t, C);
    auto out = b.empty(t, N * C), mean = b.empty(DType::F32, N), rstd = b.empty(DType::F32, N);
    auto dinp = b.empty(t, N * C), dw = b.empty(DType::F32, C), db = b.empty(DType::F32, C);
    // Per block: ln1 a plain layer norm, then h = x + attn and ln2(h) fused, then the block's
    // output add; ln_f plain. Backward: ln2's input gradient lands in h's in place (fused), x's
    // two gradients (ln1's and the residual's) are accumulated by autograd (one add).
    add("layernorm forward", L + 1, [&] {
      return b.time_ms([&] {
        b.be.layernorm_forward(t, out->get(), mean->get(), rstd->get(), inp->get(), w->get(),
                               bias->get(), N, C, 1e-5);
      });
    });
    add("layernorm backward", L + 1, [&] {
      return b.time_ms([&] {
        b.be.layernorm_backward(t, dinp->get(), dw->get(), db->get(), out->get(), inp->get(),
                                w->get(), mean->get(), rstd->get(), N, C);
      });
    });
    auto res = b.empty(t, N * C);
    add("residual + layernorm forward (fused)", L, [&] {
      return b.time_ms([&] {
        b.be.residual_layernorm_forward(t, res->get(), out->get(), mean->get(), rstd->get(),
                                        inp->get(), dinp->get(), w->get(), bias->get(), N, C, 1e-5);
      });
    });
    add("residual + layernorm backward (fused, in place)", L, [&] {
      return b.time_ms([&] {
        b.be.residual_layernorm_backward(t, dinp->get(), dw->get(), db->get(), dinp->get(),
                                         out->get(), res->get(), w->get(), mean->get(), rstd->get(),
                                         N, C);
      });
    });
    const int64_t shape[1] = {N * C}, stride[1] = {1};
    add("residual add", L, [&] {
      return b.time_ms([&] {
        b.be.binary_strided(trident::BinaryOpKind::Add, t, out->get(), inp->get(), stride,
                            dinp->get(), stride, shape, 1);
      });
    });
    add("residual gradient accumulate (axpy)", L,
        [&] { return b.time_ms([&] { b.be.axpy(t, out->get(), inp->get(), 1.0, N * C); }); });
  }
  linear("qkv", C, 3 * C, L);
  linear("attention projection", C, C, L);
  linear("mlp fc", C, 4 * C, L);
  linear("mlp projection", 4 * C, C, L);
  linear("lm head", C, V, 1);
  {
    auto x = b.random(t, N * 4 * C), bias = b.random(t, 4 * C), y = b.empty(t, N * 4 * C);
    auto db = b.empty(t, 4 * C);
    add("bias add (all linears, as mlp fc)", 4 * L, [&] {
      return b.time_ms([&] { b.be.add_bias(t, y->get(), x->get(), bias->get(), N, 4 * C); });
    });
    add("bias backward (all linears, as mlp fc)", 4 * L,
        [&] { return b.time_ms([&] { b.be.bias_backward(t, db->get(), x->get(), N, 4 * C); }); });
    add("gelu forward", L,
        [&] { return b.time_ms([&] { b.be.gelu_forward(t, y->get(), x->get(), N * 4 * C); }); });
    add("gelu backward", L, [&] {
      return b.time_ms([&] { b.be.gelu_backward(t, y->get(), x->get(), x->get(), N * 4 * C); });
    });
  }
  {
    auto qkv = b.random(t, N * 3 * C), dout = b.random(t, N * C), out = b.empty(t, N * C);
    auto dqkv = b.empty(t, N * 3 * C);
    auto saved = b.empty(t, b.be.attention_saved_elements(t, B, T, C, NH));
    add("attention forward", L, [&] {
      return b.time_ms(
          [&] { b.be.attention_forward(t, out->get(), saved->get(), qkv->get(), B, T, C, NH); });
    });
    add("attention backward", L, [&] {
      return b.time_ms([&] {
        b.be.attention_backward(t, dqkv->get(), dout->get(), qkv->get(), out->get(), saved->get(),
                                B, T, C, NH);
      });
    });
  }
  {
    // The fused classifier (one online pass, the gradient written over the logits), as GPT's
    // head runs it at --tp 1; later repetitions read the previous gradient, values stay bounded.
    auto logits = b.random(t, N * V, -4.0f, 4.0f), targets = b.random_ids(N, vocab);
    auto losses = b.empty(DType::F32, N), dloss = b.empty(DType::F32, 1);
    add("cross entropy (fused classifier, forward + backward)", 1, [&] {
      return b.time_ms([&] {
        b.be.cross_entropy_fused(t, logits->get(), losses->get(), dloss->get(),
                                 targets->as<int32_t>(), N, V, vocab, 1.0);
      });
    });
  }
  {
    const int64_t P = 124439808;
    auto p = b.random(DType::F32, P), g = b.random(DType::F32, P);
    auto m = b.random(DType::F32, P, 0.0f, 0.01f), v = b.random(DType::F32, P, 0.0f, 0.01f);
    int64_t step = 1;
    add("adamw (all parameters, fp32)", 1, [&] {
      return b.time_ms([&] {
        b.be.adamw_update(p->as<float>(), g->as<float>(), m->as<float>(), v->as<float>(), P, 1e-4f,
                          0.9f, 0.95f, 1e-8f, 0.1f, step++);
      });
    });
  }
  for (auto& row : ops)
    if (row.contains("total_ms")) row["percent"] = 100.0 * row["total_ms"].get<double>() / total;
  return {{"model", "gpt2 124M"},
          {"B", B},
          {"T", T},
          {"dtype", "bf16"},
          {"ops", ops},
          {"total_ms", total},
          {"note",
           "each op timed alone (median of reps) and multiplied by its count per step; "
           "no launch gaps, host work or communication"}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Trident CUDA kernels: attention, memory-bound kernels, one GPT-2 step by op"};
  std::string out_path, only = "copy,attention,memory,breakdown";
  int warmup = 3, reps = 20;
  app.add_option("--out", out_path, "Write the JSON here (default: stdout only)");
  app.add_option("--only", only, "Comma-separated sections: copy,attention,memory,breakdown")
      ->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed runs first")->capture_default_str();
  app.add_option("--reps", reps, "Timed runs (median)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const auto wants = [&](const char* s) { return only.find(s) != std::string::npos; };

  json doc{{"benchmark", "trident-bench-gpu-kernels"},
           {"date", trident::bench::utc_now()},
           {"machine", trident::bench::machine_json()},
           {"warmup", warmup},
           {"reps", reps}};
  std::string cmd;
  for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
  doc["command"] = cmd;
  try {
    trident::cuda_check_device(0);
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    doc["device"] = {{"name", prop.name},
                     {"sms", prop.multiProcessorCount},
                     {"memory_bytes", prop.totalGlobalMem},
                     {"l2_bytes", prop.l2CacheSize},
                     {"cc", std::to_string(prop.major) + "." + std::to_string(prop.minor)}};
    Backend& be = trident::backend_for(trident::Device::cuda(0));
    Bench b{be, static_cast<cudaStream_t>(trident::cuda_compute_stream(0)), warmup, reps};
    if (wants("copy")) doc["copy"] = guarded("copy", [&] { return bench_copy(b); });
    if (wants("attention")) {
      doc["attention"] = json::array();
      for (int64_t T : {1024, 2048})
        doc["attention"].push_back(guarded("attention", [&] { return bench_attention(b, T); }));
    }
    if (wants("memory")) doc["memory"] = bench_memory(b);
    if (wants("breakdown"))
      doc["breakdown"] = guarded("breakdown", [&] { return bench_breakdown(b); });
  } catch (const std::exception& e) {
    doc["error"] = e.what();
    std::fprintf(stderr, "trident-bench-gpu-kernels: %s\n", e.what());
  }

  // The short table.
  const auto num = [](const json& j, const char* k) {
    return j.is_object() && j.contains(k) ? j[k].get<double>() : -1.0;
  };
  if (doc.contains("copy"))
    std::printf("copy d2d            %8.1f GB/s\n", num(doc["copy"], "gb_per_s"));
  if (doc.contains("attention"))
    for (const json& a : doc["attention"])
      std::printf("attention T=%-5lld  fwd %7.3f ms  bwd %7.3f ms  fwd+bwd %6.1f TFLOP/s\n",
                  a.contains("T") ? static_cast<long long>(a["T"].get<int64_t>()) : -1LL,
                  num(a, "fwd_ms"), num(a, "bwd_ms"), num(a, "fwd_bwd_tflops"));
  if (doc.contains("memory"))
    for (auto& [k, v] : doc["memory"].items())
      for (const char* dir : {"forward", "backward", "update"})
        if (v.contains(dir))
          std::printf("%-14s %-8s %8.1f GB/s\n", k.c_str(), dir, num(v[dir], "gb_per_s"));
  if (doc.contains("breakdown") && doc["breakdown"].contains("total_ms"))
    std::printf("gpt2 step by op     %8.1f ms (sum of ops)\n", num(doc["breakdown"], "total_ms"));
  const std::string text = doc.dump(2);
  if (!out_path.empty()) {
    std::FILE* f = std::fopen(out_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
      return 1;
    }
    std::fprintf(f, "%s\n", text.c_str());
    std::fclose(f);
  }
  return doc.contains("error") ? 1 : 0;
}
