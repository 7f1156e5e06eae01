// GEMM micro-benchmark at the GPT's shapes: the packed kernel behind kernels::cpu::gemm against
// Eigen's product (gemm_eigen, the path gemm took before), same shapes, same buffers, same
// thread count, alternating A/B in every round so machine noise hits both.
//
//   trident-bench-gemm                       # both models' shapes, threads 1 and 2, 5 rounds
//   trident-bench-gemm --threads 1 --rounds 9 --json bench/results/gemm-DATE.json
//
// Shapes are those of one training step of bench/cpu_train.sh's models, R = batch * seq rows:
// forward y = x W^T (NT), dx = dy W (NN), dW = dy^T x (TN), for qkv, attention projection,
// MLP up and down, and the tied head. Per (shape, threads, impl) the median GFLOP/s of the
// rounds is reported (each round: the median of --reps calls after one warm-up call), with the
// ratio packed / eigen and the largest relative difference between the two results.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "trident/kernels/cpu/cpu_isa.hpp"
#include "trident/kernels/cpu/gemm.hpp"

namespace {

namespace cpu = trident::kernels::cpu;
using trident::bench::median;

struct Shape {
  std::string model, name;
  bool ta, tb;
  int64_t M, N, K;
};

// The linear layers of a GPT of width C, MLP 4C, vocabulary V, R rows per step.
void add_model(std::vector<Shape>& out, const std::string& model, int64_t R, int64_t C, int64_t V) {
  const struct {
    const char* name;
    int64_t in, outf;
  } layers[] = {{"qkv", C, 3 * C},
                {"attn_proj", C, C},
                {"fc", C, 4 * C},
                {"mlp_proj", 4 * C, C},
                {"head", C, V}};
  for (const auto& l : layers) {
    out.push_back({model, std::string(l.name) + " fwd", false, true, R, l.outf, l.in});
    out.push_back({model, std::string(l.name) + " dx", false, false, R, l.in, l.outf});
    out.push_back({model, std::string(l.name) + " dW", true, false, l.outf, l.in, R});
  }
}

using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const float*, int64_t, float, float*, int64_t);

// Median seconds of `reps` calls after one warm-up call.
double time_calls(GemmFn fn, const Shape& s, const std::vector<float>& A,
                  const std::vector<float>& B, std::vector<float>& C, int reps) {
  const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
  std::vector<double> t;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), s.N);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) t.push_back(dt);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 2};
  int rounds = 5, reps = 5;
  std::string json_path;
  CLI::App app{"GEMM at the GPT's shapes: packed kernel vs Eigen (prints a table)"};
  app.add_option("--threads", threads, "OpenMP thread counts, e.g. 1,2")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Alternating rounds per shape")->capture_default_str();
  app.add_option("--reps", reps, "Timed calls per round")->capture_default_str();
  app.add_option("--json", json_path, "Also write the results here");
  CLI11_PARSE(app, argc, argv);

  if (!cpu::gemm_is_packed()) {
    std::fprintf(stderr,
                 "trident-bench-gemm: no packed kernel here (no AVX2/FMA, or "
                 "TRIDENT_CPU_ISA=generic)\n");
    return 1;
  }
  std::printf("packed kernel: %s (cpu_isa; TRIDENT_CPU_ISA lowers it)\n",
              cpu::cpu_isa_name(cpu::cpu_isa()));
  std::vector<Shape> shapes;
  add_model(shapes, "10M", 8 * 128, 384, 4096);
  add_model(shapes, "tiny", 16 * 64, 128, 256);

  nlohmann::json results = nlohmann::json::array();
  std::printf("%-5s %-14s %-2s %5s %5s %5s %3s %9s %9s %6s %9s\n", "model", "gemm", "op", "M", "N",
              "K", "thr", "eigen", "packed", "ratio", "max_rel");
  double log_ratio_sum[3] = {0, 0, 0};
  int log_ratio_n[3] = {0, 0, 0};
  for (const Shape& s : shapes) {
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    std::vector<float> A(s.M * s.K), B(s.K * s.N), C_eigen(s.M * s.N), C_packed(s.M * s.N);
    for (auto& x : A) x = dist(gen);
    for (auto& x : B) x = dist(gen);
    const double flops = 2.0 * s.M * s.N * s.K;
    for (int t : threads) {
      omp_set_num_threads(t);
      std::vector<double> g_eigen, g_packed;
      for (int r = 0; r < rounds; ++r) {
        const bool eigen_first = r % 2 == 0;
        for (int k = 0; k < 2; ++k) {
          if ((k == 0) == eigen_first) {
            g_eigen.push_back(flops / time_calls(cpu::gemm_eigen<float>, s, A, B, C_eigen, reps) /
                              1e9);
          } else {
            g_packed.push_back(flops / time_calls(cpu::gemm<float>, s, A, B, C_packed, reps) / 1e9);
          }
        }
      }
      double max_rel = 0, scale = 0;
      for (float x : C_eigen) scale = std::max(scale, static_cast<double>(std::abs(x)));
      for (size_t i = 0; i < C_eigen.size(); ++i) {
        max_rel =
            std::max(max_rel, std::abs(static_cast<double>(C_packed[i]) - C_eigen[i]) / scale);
      }
      const double ge = median(g_eigen), gp = median(g_packed);
      const char* op = s.ta ? "TN" : (s.tb ? "NT" : "NN");
      std::printf("%-5s %-14s %-2s %5ld %5ld %5ld %3d %9.1f %9.1f %6.2f %9.1e\n", s.model.c_str(),
                  s.name.c_str(), op, static_cast<long>(s.M), static_cast<long>(s.N),
                  static_cast<long>(s.K), t, ge, gp, gp / ge, max_rel);
      std::fflush(stdout);
      const int slot = std::min(t, 3) - 1;
      log_ratio_sum[slot] += std::log(gp / ge);
      ++log_ratio_n[slot];
      results.push_back({{"model", s.model},
                         {"gemm", s.name},
                         {"op", op},
                         {"M", s.M},
                         {"N", s.N},
                         {"K", s.K},
                         {"threads", t},
                         {"gflops_median", {{"eigen", ge}, {"packed", gp}}},
                         {"gflops_rounds", {{"eigen", g_eigen}, {"packed", g_packed}}},
                         {"ratio_packed_over_eigen", gp / ge},
                         {"max_abs_diff_over_max_abs", max_rel}});
    }
  }
  for (int slot = 0; slot < 3; ++slot) {
    if (log_ratio_n[slot] == 0) continue;
    std::printf("threads %s: geometric mean ratio packed/eigen %.2f over %d shapes\n",
                slot == 2 ? ">=3" : std::to_string(slot + 1).c_str(),
                std::exp(log_ratio_sum[slot] / log_ratio_n[slot]), log_ratio_n[slot]);
  }
  if (!json_path.empty()) {
    std::string command = "trident-bench-gemm";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const nlohmann::json doc = {
        {"benchmark",
         "float GEMM at the GPT's shapes (bench/gemm_bench.cpp): packed kernel "
         "(kernels::cpu::gemm) vs Eigen (gemm_eigen), alternating, median GFLOP/s"},
        {"date", trident::bench::utc_now()},
        {"machine", trident::bench::machine_json()},
        {"command", command},
        {"cpu_isa", cpu::cpu_isa_name(cpu::cpu_isa())},
        {"rounds", rounds},
        {"reps", reps},
        {"results", results}};
    std::ofstream(json_path) << doc.dump(2) << "\n";
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
