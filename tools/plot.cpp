// trident-plot RUN... -o FILE.png: training curves of one or several trident-train runs, from
// their metrics.jsonl (a RUN is the file or the --out-dir holding it): loss against step
// (training, and validation as squares) on a log scale, and throughput (tokens/s) against step.
// Lines with "loss" are training steps, lines with "val_loss" validations (trainer.cpp).
#include "trident/tools/plot.hpp"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "trident/core/error.hpp"
#include "trident/tools/font.hpp"
#include "trident/tools/png.hpp"

namespace {

using namespace trident::tools;

struct Run {
  std::string label;
  std::vector<double> step, loss, tok_s, val_step, val_loss;
};

Run read_run(const std::string& arg, const std::string& label) {
  namespace fs = std::filesystem;
  const std::string path = fs::is_directory(arg) ? (fs::path(arg) / "metrics.jsonl").string() : arg;
  std::ifstream in(path);
  TRIDENT_CHECK(in.good(), path, ": cannot open (give a metrics.jsonl or the --out-dir of a run)");
  Run r;
  r.label = label.empty()
                ? (fs::is_directory(arg) ? fs::path(arg).filename().string()
                                         : fs::path(arg).parent_path().filename().string())
                : label;
  if (r.label.empty()) r.label = arg;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw trident::Error(trident::str_cat(path, ":", n, ": not JSON (", e.what(), ")"));
    }
    if (!j.contains("step")) continue;
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number()) {
      r.step.push_back(step);
      r.loss.push_back(j["loss"].get<double>());
      r.tok_s.push_back(j.contains("tokens_per_s") && j["tokens_per_s"].is_number()
                            ? j["tokens_per_s"].get<double>()
                            : NAN);
    }
    if (j.contains("val_loss") && j["val_loss"].is_number()) {
      r.val_step.push_back(step);
      r.val_loss.push_back(j["val_loss"].get<double>());
    }
  }
  TRIDENT_CHECK(!r.step.empty(), path, ": no training steps (lines with \"step\" and \"loss\")");
  return r;
}

const Rgb kColors[] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44},   {148, 103, 189},
                       {255, 127, 14}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident-plot: loss and throughput curves of trident-train runs"};
  std::vector<std::string> runs, labels;
  std::string out = "curves.png";
  int width = 1100, height = 420;
  app.add_option("runs", runs, "metrics.jsonl files or run directories")->required();
  app.add_option("-o,--output", out, "PNG file to write")->capture_default_str();
  app.add_option("--labels", labels, "Legend labels, one per run (default: directory names)");
  app.add_option("--width", width, "Image width")->capture_default_str();
  app.add_option("--height", height, "Image height")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    TRIDENT_CHECK(labels.empty() || labels.size() == runs.size(), "--labels: ", labels.size(),
                  " labels for ", runs.size(), " runs");
    std::vector<Series> loss, speed;
    for (size_t i = 0; i < runs.size(); ++i) {
      const Run r = read_run(runs[i], labels.empty() ? "" : labels[i]);
      const Rgb c = kColors[i % 8];
      loss.push_back({r.label + " train", r.step, r.loss, c, false});
      if (!r.val_step.empty()) {
        const Rgb dark{static_cast<uint8_t>(c.r / 2), static_cast<uint8_t>(c.g / 2),
                       static_cast<uint8_t>(c.b / 2)};
        loss.push_back({r.label + " val", r.val_step, r.val_loss, dark, true});
      }
      speed.push_back({r.label, r.step, r.tok_s, c, false});
      std::printf(
          "%s: %zu steps, final loss %.4f%s\n", runs[i].c_str(), r.step.size(), r.loss.back(),
          r.val_loss.empty() ? "" : trident::str_cat(", val loss ", r.val_loss.back()).c_str());
    }
    Image img(width, height);
    const int half = width / 2;
    draw_plot(img, 0, 0, half, height, loss, {"loss", "step", "nats", true});
    draw_plot(img, half, 0, width - half, height, speed, {"throughput", "step", "tok/s", false});
    write_png(img, out);
    std::printf("plot written to %s\n", out.c_str());
    return 0;
  } catch (const trident::Error& e) {
    std::fprintf(stderr, "trident-plot: error: %s\n", e.what());
    return 1;
  }
}
