// trident-compare_runs A B: do two trident-train runs agree? Compares the per-step losses of
// A/metrics.jsonl and B/metrics.jsonl and every tensor of A/model.safetensors and
// B/model.safetensors; a loss differs when |a - b| > rtol |b|, a tensor when
// max|a - b| > rtol max|b|. Exit 0 when all agree, 1 otherwise (with the worst offenders).
// Losses are matched by step; with --from-step S only steps >= S are compared (a run resumed
// from a checkpoint of step S - 1 against an uninterrupted one), else both must have the same
// steps. --rtol 0 asks for bitwise-equal losses (they are printed with 17 digits).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "trident/core/error.hpp"
#include "trident/core/safetensors.hpp"

namespace {

// step -> training loss (the last line of a step wins, as after a resume).
std::map<int64_t, double> losses(const std::string& dir, int64_t from_step) {
  std::ifstream in(dir + "/metrics.jsonl");
  TRIDENT_CHECK(in.good(), dir, "/metrics.jsonl: cannot open");
  std::map<int64_t, double> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("loss") || !j.contains("step") || j["loss"].is_null()) continue;  // null: NaN
    const int64_t step = j["step"].get<int64_t>();
    if (step >= from_step) out[step] = j["loss"].get<double>();
  }
  return out;
}

int run(const std::string& a, const std::string& b, double rtol, int64_t from_step) {
  int bad = 0;
  const auto la = losses(a, from_step), lb = losses(b, from_step);
  if (la.size() != lb.size() || la.empty()) {
    std::printf("steps differ: %zu vs %zu steps from step %lld\n", la.size(), lb.size(),
                static_cast<long long>(from_step));
    return 1;
  }
  double worst_loss = 0;
  for (const auto& [step, loss] : la) {
    const auto it = lb.find(step);
    if (it == lb.end()) {
      std::printf("step %lld: missing in %s\n", static_cast<long long>(step), b.c_str());
      ++bad;
      continue;
    }
    const double rel = std::abs(loss - it->second) / std::max(std::abs(it->second), 1e-30);
    worst_loss = std::max(worst_loss, rel);
    if (rel > rtol) {
      std::printf("step %lld: loss %.17g vs %.17g (relative %.2e)\n", static_cast<long long>(step),
                  loss, it->second, rel);
      ++bad;
    }
  }
  auto fa = trident::SafetensorsFile::open(a + "/model.safetensors");
  auto fb = trident::SafetensorsFile::open(b + "/model.safetensors");
  TRIDENT_CHECK(fa.names() == fb.names(), "the two models have different parameter names");
  double worst_w = 0;
  for (const auto& name : fa.names()) {
    const auto va = fa.read_f32(name), vb = fb.read_f32(name);
    TRIDENT_CHECK(va.size() == vb.size(), name, ": sizes differ");
    double diff = 0, scale = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(va[i] - vb[i])));
      scale = std::max(scale, static_cast<double>(std::abs(vb[i])));
    }
    const double rel = diff / std::max(scale, 1e-30);
    worst_w = std::max(worst_w, rel);
    if (rel > rtol) {
      std::printf("%s: max |diff| %.3e, relative %.2e\n", name.c_str(), diff, rel);
      ++bad;
    }
  }
  std::printf(
      "%zu steps, %zu tensors: worst loss difference %.2e, worst weight difference %.2e "
      "(tolerance %.0e): %s\n",
      la.size(), fa.names().size(), worst_loss, worst_w, rtol, bad ? "DIFFER" : "agree");
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compare the losses and final weights of two trident-train runs"};
  std::string a, b;
  double rtol = 1e-5;
  int64_t from_step = 0;
  app.add_option("run_a", a, "Output directory of the first run")->required();
  app.add_option("run_b", b, "Output directory of the reference run")->required();
  app.add_option("--rtol", rtol, "Relative tolerance (0: bitwise)")->capture_default_str();
  app.add_option("--from-step", from_step, "Compare the losses of steps >= this one only");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(a, b, rtol, from_step);
  } catch (const trident::Error& e) {
    std::fprintf(stderr, "trident-compare_runs: error: %s\n", e.what());
    return 2;
  }
}
