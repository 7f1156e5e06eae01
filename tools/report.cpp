// trident-report TRACE: where the steps of a traced trident-train run went. Reads rank 0's
// trace (TRACE) and the other ranks' (TRACE.rank<N>.json, or one merged file), prints per
// rank and overall the share of step time spent busy (compute, optimizer, data, other),
// blocked on exposed communication, and idle (pipeline bubble, waiting on a straggler), names
// the slowest rank, and MFU where the trace knows the device's peak FLOP/s (GPU runs).
// --png draws the timeline; --merge writes every rank into one file for Perfetto.
// The arithmetic is tools/common/include/trident/tools/step_analysis.hpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/tools/png.hpp"
#include "trident/tools/step_analysis.hpp"
#include "trident/tools/timeline.hpp"
#include "trident/tools/trace_reader.hpp"

namespace {

using namespace trident::tools;

nlohmann::json to_json(const RunReport& rep) {
  auto shares = [](const Breakdown& b) {
    nlohmann::json j = {{"step_ms", b.step / 1000}};
    const double pct = b.step > 0 ? 100.0 / b.step : 0;
    j["busy_pct"] = b.busy() * pct;
    j["exposed_comm_pct"] = b.at(Share::Comm) * pct;
    j["bubble_pct"] = b.at(Share::Bubble) * pct;
    j["straggler_pct"] = b.at(Share::Straggler) * pct;
    j["compute_pct"] = b.at(Share::Compute) * pct;
    j["optimizer_pct"] = b.at(Share::Optimizer) * pct;
    j["data_pct"] = b.at(Share::Data) * pct;
    j["other_pct"] = b.at(Share::Other) * pct;
    return j;
  };
  nlohmann::json j;
  j["world_size"] = rep.world_size;
  j["first_step"] = rep.first_step;
  j["last_step"] = rep.last_step;
  j["mean_step_ms"] = rep.mean_step_us / 1000;
  j["slowest_rank"] = rep.slowest_rank;
  j["flops_per_step"] = rep.flops_per_step;
  j["mfu"] = rep.mfu ? nlohmann::json(*rep.mfu) : nlohmann::json(nullptr);
  j["overall"] = shares(rep.overall);
  for (const auto& r : rep.ranks) {
    nlohmann::json rj = shares(r.total);
    rj["rank"] = r.rank;
    rj["steps"] = r.steps;
    rj["step_ms"] = r.total.step / r.steps / 1000;
    rj["comm_thread_ms_per_step"] = r.comm_thread_us / r.steps / 1000;
    rj["comm_thread_bytes_per_step"] = r.comm_thread_bytes / r.steps;
    j["ranks"].push_back(rj);
  }
  return j;
}

int run(const std::string& trace, const std::string& png, const std::string& json_out,
        const std::string& merge, int skip, int width, int64_t from_step, int64_t to_step) {
  if (!merge.empty()) {
    const std::string merged = merge_trace_files(run_files(trace));
    trident::write_file_atomically(merge, [&](std::ostream& o) { o << merged; });
    std::printf("merged trace written to %s\n", merge.c_str());
  }
  const auto ranks = load_run(trace);
  const auto timelines = build_timelines(ranks);
  const RunReport rep = analyze_run(ranks, timelines, skip);
  std::fputs(format_report(rep).c_str(), stdout);
  if (!json_out.empty()) {
    const std::string text = to_json(rep).dump(2) + "\n";
    trident::write_file_atomically(json_out, [&](std::ostream& o) { o << text; });
  }
  if (!png.empty()) {
    TimelineOptions opts;
    opts.width = width;
    opts.begin_us = rep.window_begin_us;
    opts.end_us = rep.window_end_us;
    // A window of steps by rank 0's step numbers, from the start of `from` to the end of `to`.
    const RankTimeline& r0 = timelines[0];
    for (size_t i = 0; i < r0.steps.size(); ++i) {
      if (from_step > 0 && r0.steps[i].first == from_step) opts.begin_us = r0.step_spans[i].first;
      if (to_step > 0 && r0.steps[i].first == to_step) opts.end_us = r0.step_spans[i].second;
    }
    opts.title =
        trident::str_cat("trident timeline | ", rep.description, " | ", rep.world_size, " ranks");
    write_png(draw_timeline(timelines, opts), png);
    std::printf("timeline written to %s\n", png.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "trident-report: step-time shares, slowest rank, MFU and a timeline PNG from "
      "trident-train --trace files"};
  std::string trace, png, json_out, merge;
  int skip = 1, width = 1200;
  int64_t from_step = 0, to_step = 0;
  app.add_option("trace", trace, "Rank 0's trace file (or a merged trace)")->required();
  app.add_option("--png", png, "Draw the timeline to this PNG file");
  app.add_option("--json", json_out, "Write the numbers as JSON to this file");
  app.add_option("--merge", merge, "Write every rank's events into one Chrome trace file");
  app.add_option("--skip", skip, "Warm-up steps of each rank left out")->capture_default_str();
  app.add_option("--width", width, "PNG width in pixels")->capture_default_str();
  app.add_option("--from-step", from_step, "PNG window: from the start of this step (rank 0)");
  app.add_option("--to-step", to_step, "PNG window: to the end of this step (rank 0)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(trace, png, json_out, merge, skip, width, from_step, to_step);
  } catch (const trident::Error& e) {
    std::fprintf(stderr, "trident-report: error: %s\n", e.what());
    return 1;
  }
}
