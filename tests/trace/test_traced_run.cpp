// Checks on the outputs of traced_run.sh (an 8-rank dp 2 x tp 2 x pp 2 run and its report);
// hidden from the unit tests, run by ctest's trace.mpi.traced_run_3d with the run's directory
// in TRIDENT_TRACED_RUN_DIR.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "trident/tools/png.hpp"
#include "trident/tools/step_analysis.hpp"
#include "trident/tools/trace_reader.hpp"

using namespace trident::tools;

TEST_CASE("an 8-rank traced run: one trace per rank, shares that add up, a timeline",
          "[.traced_run]") {
  const char* env = std::getenv("TRIDENT_TRACED_RUN_DIR");
  REQUIRE(env != nullptr);
  const std::string dir = env;
  for (int r = 1; r < 8; ++r)
    CHECK(std::filesystem::exists(dir + "/trace.rank" + std::to_string(r) + ".json"));
  const auto ranks = load_run(dir + "/trace.json");
  REQUIRE(ranks.size() == 8);
  std::set<std::string> tracks;
  for (const auto& r : ranks) {
    CHECK(r.metadata["layout"] == "dp 2 x pp 2 x tp 2");
    CHECK(r.metadata["flops_per_step"].get<double>() > 0);
    CHECK(r.metadata["peak_flops_per_rank"].is_null());  // CPU: no MFU
    for (const auto& t : r.tracks) tracks.insert(t.name);
    // Four steps on every rank, each with forward and backward of both micro-batches.
    int steps = 0, fwd = 0, bwd = 0;
    for (const auto& s : r.main_track()->spans) {
      steps += s.name == "step";
      fwd += s.name == "forward";
      bwd += s.name == "backward";
    }
    CHECK(steps == 4);
    CHECK(fwd >= 8);  // + validation forwards, which are not pipeline spans
    CHECK(bwd == 8);
  }
  for (const char* t : {"main", "comm tp", "comm dp", "comm pp", "comm world"})
    CHECK(tracks.count(t));

  // The same collective (name, group, seq) appears on both ranks of its group.
  std::map<std::tuple<std::string, int64_t, int64_t>, int> seen;
  for (const auto& r : ranks)
    for (const auto& t : r.tracks)
      for (const auto& s : t.spans)
        if (s.has("seq") && t.name == "comm dp") ++seen[{s.name, s.arg("group"), s.arg("seq")}];
  REQUIRE_FALSE(seen.empty());
  for (const auto& [key, n] : seen) CHECK(n == 2);

  const auto rep = nlohmann::json::parse(read_text_file(dir + "/report.json"));
  CHECK(rep["world_size"] == 8);
  CHECK(rep["first_step"] == 2);
  CHECK(rep["last_step"] == 4);
  CHECK(rep["mfu"].is_null());
  REQUIRE(rep["ranks"].size() == 8);
  double bubble = 0;
  for (const auto& r : rep["ranks"]) {
    const double sum = r["busy_pct"].get<double>() + r["exposed_comm_pct"].get<double>() +
                       r["bubble_pct"].get<double>() + r["straggler_pct"].get<double>();
    CHECK(sum == Approx(100).epsilon(0.005));
    CHECK(r["busy_pct"].get<double>() > 5);
    CHECK(r["steps"] == 3);
    CHECK(r["comm_thread_bytes_per_step"].get<double>() > 0);
    bubble += r["bubble_pct"].get<double>();
  }
  CHECK(bubble > 0);  // two pipeline stages wait on each other

  const Image png = decode_png(read_text_file(dir + "/timeline.png"));
  CHECK(png.width() == 1200);
  CHECK(png.height() > 8 * 30);
  int red = 0, green = 0;
  for (int y = 0; y < png.height(); ++y) {
    for (int x = 0; x < png.width(); ++x) {
      red += png.at(x, y) == Rgb{214, 39, 40};
      green += png.at(x, y) == Rgb{44, 160, 44};
    }
  }
  CHECK(red > 1000);
  CHECK(green > 100);
  CHECK(load_run(dir + "/merged.json").size() == 8);

  // trident-plot's curves: loss (train and the validation at step 2 and 4) and throughput.
  const Image curves = decode_png(read_text_file(dir + "/curves.png"));
  CHECK(curves.width() == 1100);
  int val_lines = 0;
  for (const auto& line :
       {std::string("\"step\": 2, \"val_loss\""), std::string("\"step\": 4, \"val_loss\"")})
    val_lines += read_text_file(dir + "/run/metrics.jsonl").find(line) != std::string::npos;
  CHECK(val_lines == 2);
  int blue = 0;  // the first run's colour
  for (int y = 0; y < curves.height(); ++y)
    for (int x = 0; x < curves.width(); ++x) blue += curves.at(x, y) == Rgb{31, 119, 180};
  CHECK(blue > 200);
}
