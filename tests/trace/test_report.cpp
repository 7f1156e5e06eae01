// trident-report's arithmetic (tools/common step_analysis) on hand-made two-rank traces whose
// shares are known exactly, and reading a run back from per-rank files or a merged file.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "trident/core/error.hpp"
#include "trident/tools/step_analysis.hpp"
#include "trident/tools/trace_reader.hpp"

using namespace trident;
using namespace trident::tools;
using nlohmann::json;

namespace {

json X(int pid, int tid, const std::string& name, const std::string& cat, double ts, double dur,
       json args = json::object()) {
  json e = {{"ph", "X"},  {"pid", pid}, {"tid", tid}, {"name", name},
            {"cat", cat}, {"ts", ts},   {"dur", dur}};
  if (!args.empty()) e["args"] = args;
  return e;
}

// Rank 0, step 1 over [0, 100) us:
//   forward 0-40 | wait (comm) 40-60 | backward 60-90 | optimizer 90-100
//   its MPI thread runs "all_reduce tp" (seq 5, group 0) from 45 to 58.
// Rank 1, step 1 over [0, 100):
//   forward 0-52 | wait (comm) 52-60 | idle "wait activation" 60-70 holding a comm wait 62-68 |
//   backward 70-100; its MPI thread runs the same all_reduce from 52 to 58.
// The all_reduce's last arrival is rank 1 at 52, so rank 0 waited 45..52 on a straggler.
json rank_doc(int rank, bool with_second_step = false) {
  json ev = json::array();
  ev.push_back({{"ph", "M"},
                {"pid", rank},
                {"tid", 0},
                {"name", "thread_name"},
                {"args", {{"name", "main"}}}});
  ev.push_back({{"ph", "M"},
                {"pid", rank},
                {"tid", 1},
                {"name", "thread_name"},
                {"args", {{"name", "comm tp"}}}});
  ev.push_back({{"ph", "M"},
                {"pid", rank},
                {"tid", 0},
                {"name", "process_name"},
                {"args", {{"name", "rank " + std::to_string(rank)}}}});
  ev.push_back(X(rank, 0, "step", "step", 0, 100, {{"step", 1}}));
  if (rank == 0) {
    ev.push_back(X(0, 0, "forward", "compute", 0, 40));
    ev.push_back(X(0, 0, "wait all_reduce of 4 f32 (sum)", "comm", 40, 20));
    ev.push_back(X(0, 0, "backward", "compute", 60, 30));
    ev.push_back(X(0, 0, "optimizer step", "optimizer", 90, 10));
    ev.push_back(
        X(0, 1, "all_reduce tp", "comm", 45, 13, {{"bytes", 16}, {"seq", 5}, {"group", 0}}));
  } else {
    ev.push_back(X(1, 0, "forward", "compute", 0, 52));
    ev.push_back(X(1, 0, "wait all_reduce of 4 f32 (sum)", "comm", 52, 8));
    ev.push_back(X(1, 0, "wait activation", "idle", 60, 10));
    ev.push_back(X(1, 0, "wait recv", "comm", 62, 6));
    ev.push_back(X(1, 0, "backward", "compute", 70, 30));
    ev.push_back(
        X(1, 1, "all_reduce tp", "comm", 52, 6, {{"bytes", 16}, {"seq", 5}, {"group", 0}}));
  }
  if (with_second_step) {  // step 2: all data loading, 100-150
    ev.push_back(X(rank, 0, "step", "step", 100, 50, {{"step", 2}}));
    ev.push_back(X(rank, 0, "load batch", "data", 100, 50));
  }
  json meta = {{"rank", rank},
               {"world_size", 2},
               {"layout", "dp 1 x pp 1 x tp 2"},
               {"flops_per_step", 1e6},
               {"peak_flops_per_rank", 1e12}};
  return {{"traceEvents", ev}, {"otherData", meta}};
}

std::vector<RankTrace> two_ranks(bool second_step = false) {
  std::vector<RankTrace> out;
  for (int r = 0; r < 2; ++r) {
    auto one = parse_trace(rank_doc(r, second_step).dump(), "synthetic");
    REQUIRE(one.size() == 1);
    out.push_back(std::move(one[0]));
  }
  return out;
}

}  // namespace

TEST_CASE("shares of a synthetic two-rank step are exact and sum to the step") {
  const auto ranks = two_ranks();
  const auto tl = build_timelines(ranks);
  const RunReport rep = analyze_run(ranks, tl, 0);
  REQUIRE(rep.ranks.size() == 2);
  const Breakdown& b0 = rep.ranks[0].total;
  CHECK(b0.step == Approx(100));
  CHECK(b0.at(Share::Compute) == Approx(70));
  CHECK(b0.at(Share::Optimizer) == Approx(10));
  CHECK(b0.at(Share::Comm) == Approx(13));      // 40..45 and 52..60
  CHECK(b0.at(Share::Straggler) == Approx(7));  // 45..52, waiting for rank 1
  CHECK(b0.at(Share::Bubble) == Approx(0));
  const Breakdown& b1 = rep.ranks[1].total;
  CHECK(b1.at(Share::Compute) == Approx(82));
  CHECK(b1.at(Share::Comm) == Approx(8));  // it arrived last: no straggler wait
  CHECK(b1.at(Share::Straggler) == Approx(0));
  CHECK(b1.at(Share::Bubble) == Approx(10));  // the comm wait inside the idle span is idle
  for (const auto& r : rep.ranks) {
    double sum = 0;
    for (double v : r.total.by_share) sum += v;
    CHECK(sum == Approx(r.total.step));
  }
  CHECK(rep.overall.step == Approx(200));
  CHECK(rep.overall.busy() == Approx(162));
  CHECK(rep.slowest_rank == 1);  // 82 us busy against 80
  CHECK(rep.mean_step_us == Approx(100));
  // MFU = 1e6 FLOP / 100 us / (2 ranks x 1e12 FLOP/s) = 0.005.
  REQUIRE(rep.mfu.has_value());
  CHECK(*rep.mfu == Approx(0.005));
  CHECK(rep.ranks[0].comm_thread_us == Approx(13));
  CHECK(rep.ranks[0].comm_thread_bytes == Approx(16));
  const std::string text = format_report(rep);
  CHECK_THAT(text, Catch::Contains("slowest rank: rank 1"));
  CHECK_THAT(text, Catch::Contains("MFU: 0.5%"));
}

TEST_CASE("the timeline segments are disjoint and classified") {
  const auto tl = build_timelines(two_ranks());
  for (const auto& r : tl) {
    for (size_t i = 1; i < r.segments.size(); ++i)
      CHECK(r.segments[i].begin_us >= r.segments[i - 1].end_us - 1e-9);
  }
  auto share_at = [&](int rank, double t) {
    for (const auto& s : tl[static_cast<size_t>(rank)].segments)
      if (s.begin_us <= t && t < s.end_us) return s.share;
    FAIL("no segment at " << t);
    return Share::Other;
  };
  CHECK(share_at(0, 10) == Share::Compute);
  CHECK(share_at(0, 42) == Share::Comm);
  CHECK(share_at(0, 50) == Share::Straggler);
  CHECK(share_at(0, 55) == Share::Comm);
  CHECK(share_at(0, 95) == Share::Optimizer);
  CHECK(share_at(1, 65) == Share::Bubble);
  CHECK(tl[0].steps.size() == 1);
  CHECK(tl[0].comm_busy.size() == 1);
}

TEST_CASE("warm-up steps are left out, keeping at least one") {
  const auto ranks = two_ranks(true);
  const auto tl = build_timelines(ranks);
  const RunReport rep = analyze_run(ranks, tl, 1);
  CHECK(rep.first_step == 2);
  CHECK(rep.last_step == 2);
  CHECK(rep.ranks[0].total.step == Approx(50));
  CHECK(rep.ranks[0].total.at(Share::Data) == Approx(50));
  const RunReport all = analyze_run(ranks, tl, 5);  // more than there are: keeps the last
  CHECK(all.ranks[0].steps == 1);
  CHECK(all.skipped_steps == 1);
}

TEST_CASE("no peak FLOP/s: MFU is unknown") {
  auto ranks = two_ranks();
  ranks[0].metadata["peak_flops_per_rank"] = nullptr;
  const RunReport rep = analyze_run(ranks, build_timelines(ranks), 0);
  CHECK_FALSE(rep.mfu.has_value());
  CHECK_THAT(format_report(rep), Catch::Contains("MFU: n/a"));
}

TEST_CASE("a run is read from per-rank files or from their merge") {
  const auto dir = std::filesystem::temp_directory_path() / "trident_report_test_files";
  std::filesystem::create_directories(dir);
  const std::string f0 = (dir / "t.json").string(), f1 = (dir / "t.rank1.json").string();
  std::ofstream(f0) << rank_doc(0).dump();
  std::ofstream(f1) << rank_doc(1).dump();
  const auto files = run_files(f0);
  REQUIRE(files.size() == 2);
  CHECK(files[1] == f1);
  const auto ranks = load_run(f0);
  REQUIRE(ranks.size() == 2);
  CHECK(ranks[1].rank == 1);
  CHECK(ranks[1].process_name == "rank 1");
  const std::string merged = (dir / "merged.json").string();
  std::ofstream(merged) << merge_trace_files(files);
  const auto again = load_run(merged);
  REQUIRE(again.size() == 2);
  CHECK(again[1].metadata["world_size"] == 2);
  const RunReport a = analyze_run(ranks, build_timelines(ranks), 0);
  const RunReport b = analyze_run(again, build_timelines(again), 0);
  CHECK(a.overall.at(Share::Straggler) == Approx(b.overall.at(Share::Straggler)));
  std::filesystem::remove(f1);
  CHECK_THROWS_WITH(load_run(f0), Catch::Contains("t.rank1.json"));
  std::ofstream(f1) << "{not json";
  CHECK_THROWS_WITH(load_run(f0), Catch::Contains("not valid JSON"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("device spans: GPU busy share, and time outside the steps") {
  json doc = rank_doc(0);
  doc["otherData"]["world_size"] = 1;
  doc["traceEvents"].push_back({{"ph", "M"},
                                {"pid", 0},
                                {"tid", 2},
                                {"name", "thread_name"},
                                {"args", {{"name", "cuda:0"}}}});
  doc["traceEvents"].push_back(X(0, 2, "forward", "compute", 5, 30));
  doc["traceEvents"].push_back(X(0, 2, "backward", "compute", 62, 30));
  doc["traceEvents"].push_back(X(0, 0, "evaluate", "other", 120, 40));
  doc["traceEvents"].push_back(X(0, 0, "checkpoint", "checkpoint", 170, 10));
  const auto ranks = parse_trace(doc.dump(), "gpu");
  const auto tl = build_timelines(ranks);
  REQUIRE(tl[0].gpu_busy.size() == 2);
  CHECK(tl[0].comm_busy.size() == 1);  // device spans are not communication
  const RunReport rep = analyze_run(ranks, tl, 0);
  CHECK(rep.ranks[0].gpu_busy_us == Approx(60));
  CHECK(rep.ranks[0].total.step == Approx(100));  // outside spans are not step time
  REQUIRE(rep.outside_steps.size() == 2);
  CHECK(rep.outside_steps[0] == std::pair<std::string, double>{"checkpoint", 10});
  CHECK(rep.outside_steps[1] == std::pair<std::string, double>{"evaluate", 40});
  const std::string text = format_report(rep);
  CHECK_THAT(text,
             Catch::Contains("GPU busy (device spans) per rank, share of step time: 0: 60.0%"));
  CHECK_THAT(text, Catch::Contains("checkpoint 0.0 ms; evaluate 0.0 ms;"));
}

TEST_CASE("a trace without steps is refused with a hint") {
  json doc = {{"traceEvents", json::array({X(0, 0, "forward", "compute", 0, 10)})},
              {"otherData", {{"rank", 0}, {"world_size", 1}}}};
  const auto ranks = parse_trace(doc.dump(), "x");
  CHECK_THROWS_WITH(analyze_run(ranks, build_timelines(ranks), 0),
                    Catch::Contains("no step spans"));
}
