// trident-compare_runs A B: do two trident-train runs agree? Compares the per-step losses and
// gradient norms of A/metrics.jsonl and B/metrics.jsonl and every element of every tensor of
// A/model.safetensors and B/model.safetensors. A loss or a gradient norm differs when
// |a - b| > rtol |b|; a tensor differs when any element has |a - b| > atol + rtol |b|
// (trident/tools/all_close.hpp; a per-tensor max|diff| / max|b| would hide a wrong small entry);
// atol defaults to rtol / 20.
// The gradient norm is compared so that a uniform gradient-scale error, which clipping and
// AdamW's normalisation hide from the losses and weights, still shows; the steps where both runs
// logged a norm are compared, and there must be at least one. Exit 0 when all agree, 1 otherwise
// (with the worst offenders). Losses are matched by step; with --from-step S only steps >= S are
// compared (a run resumed from a checkpoint of step S - 1 against an uninterrupted one), else
// both must have the same steps. --rtol 0 asks for bitwise-equal losses (they are printed with
// 17 digits). --min-loss-diff F fails when no step's losses differ by at least F relative (a
// bf16 run against an f32 one: a run that silently used f32 would pass a tolerance alone).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/tools/all_close.hpp"

namespace {

struct StepLog {
  std::map<int64_t, double> loss;       // step -> training loss (a step's last line wins)
  std::map<int64_t, double> grad_norm;  // step -> global gradient norm, where logged
};

StepLog read_log(const std::string& dir, int64_t from_step) {
  std::ifstream in(dir + "/metrics.jsonl");
  TRIDENT_CHECK(in.good(), dir, "/metrics.jsonl: cannot open");
  StepLog out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("loss") || !j.contains("step") || j["loss"].is_null()) continue;  // null: NaN
    const int64_t step = j["step"].get<int64_t>();
    if (step < from_step) continue;
    out.loss[step] = j["loss"].get<double>();
    if (j.contains("grad_norm") && !j["grad_norm"].is_null())
      out.grad_norm[step] = j["grad_norm"].get<double>();
    else
      out.grad_norm.erase(step);
  }
  return out;
}

double rel_diff(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-30);
}

int run(const std::string& a, const std::string& b, trident::tools::Tolerance tol,
        int64_t from_step, double min_loss_diff) {
  int bad = 0;
  const StepLog ra = read_log(a, from_step), rb = read_log(b, from_step);
  const auto &la = ra.loss, &lb = rb.loss;
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
    const double rel = rel_diff(loss, it->second);
    worst_loss = std::max(worst_loss, rel);
    if (!(rel <= tol.rtol)) {
      std::printf("step %lld: loss %.17g vs %.17g (relative %.2e)\n", static_cast<long long>(step),
                  loss, it->second, rel);
      ++bad;
    }
  }
  if (worst_loss < min_loss_diff) {
    std::printf(
        "losses agree too closely: worst difference %.2e < %.2e (--min-loss-diff): A does not "
        "show the effect that makes it differ from B (e.g. bf16 rounding against f32)\n",
        worst_loss, min_loss_diff);
    ++bad;
  }
  double worst_norm = 0;
  size_t norms = 0;
  for (const auto& [step, norm] : ra.grad_norm) {
    const auto it = rb.grad_norm.find(step);
    if (it == rb.grad_norm.end()) continue;
    ++norms;
    const double rel = rel_diff(norm, it->second);
    worst_norm = std::max(worst_norm, rel);
    if (!(rel <= tol.rtol)) {
      std::printf("step %lld: gradient norm %.9g vs %.9g (relative %.2e)\n",
                  static_cast<long long>(step), norm, it->second, rel);
      ++bad;
    }
  }
  if (norms == 0) {
    std::printf("no step has a gradient norm in both runs: nothing shows a gradient-scale error\n");
    ++bad;
  }
  auto fa = trident::SafetensorsFile::open(a + "/model.safetensors");
  auto fb = trident::SafetensorsFile::open(b + "/model.safetensors");
  TRIDENT_CHECK(fa.names() == fb.names(), "the two models have different parameter names");
  double worst_ratio = 0, atol_needed = 0;
  for (const auto& name : fa.names()) {
    const auto va = fa.read_f32(name), vb = fb.read_f32(name);
    TRIDENT_CHECK(va.size() == vb.size(), name, ": sizes differ");
    const auto r = trident::tools::all_close(va, vb, tol);
    worst_ratio = std::max(worst_ratio, r.worst_ratio);
    atol_needed = std::max(atol_needed, r.atol_needed);
    if (!r.ok()) {
      std::printf("%s: %s\n", name.c_str(), trident::tools::describe(r, tol).c_str());
      ++bad;
    }
  }
  std::printf(
      "%zu steps, %zu gradient norms, %zu tensors: worst loss difference %.2e, worst norm "
      "difference %.2e, worst weight element %.3g x its bound (rtol %.0e, atol %.0e; atol "
      "needed %.1e): %s\n",
      la.size(), norms, fa.names().size(), worst_loss, worst_norm, worst_ratio, tol.rtol, tol.atol,
      std::max(atol_needed, 0.0), bad ? "DIFFER" : "agree");
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compare the losses and final weights of two trident-train runs"};
  std::string a, b;
  trident::tools::Tolerance tol{1e-5, 0.0};
  int64_t from_step = 0;
  double min_loss_diff = 0;
  app.add_option("run_a", a, "Output directory of the first run")->required();
  app.add_option("run_b", b, "Output directory of the reference run")->required();
  app.add_option("--rtol", tol.rtol,
                 "Relative tolerance of losses, gradient norms and weights (0: bitwise)")
      ->capture_default_str();
  auto* atol = app.add_option("--atol", tol.atol,
                              "Absolute tolerance of each weight element (default rtol / 20)");
  app.add_option("--min-loss-diff", min_loss_diff,
                 "Fail unless some step's losses differ by at least this much (relative)");
  app.add_option("--from-step", from_step, "Compare the losses of steps >= this one only");
  CLI11_PARSE(app, argc, argv);
  // rtol / 20: 5e-7 at the default 1e-5, 8x the worst element of the f32 equivalence runs
  // (tests/mpi/equivalence.cmake); 0 with --rtol 0, which stays bitwise.
  if (atol->count() == 0) tol.atol = tol.rtol / 20;
  try {
    return run(a, b, tol, from_step, min_loss_diff);
  } catch (const trident::Error& e) {
    std::fprintf(stderr, "trident-compare_runs: error: %s\n", e.what());
    return 2;
  }
}
