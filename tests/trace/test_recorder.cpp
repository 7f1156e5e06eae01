// The trace recorder (core/trace.hpp): nothing recorded without a session, nesting, arguments,
// per-thread tracks, explicit-time spans, time zero, valid Chrome trace JSON, file names.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "trident/core/error.hpp"
#include "trident/tools/trace_reader.hpp"
#include "trident/trace/trace.hpp"

using namespace trident;
using nlohmann::json;

namespace {

std::vector<json> events_named(const json& doc, const std::string& name) {
  std::vector<json> out;
  for (const auto& e : doc["traceEvents"])
    if (e["ph"] != "M" && e["name"] == name) out.push_back(e);
  return out;
}

void busy_wait_us(int us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < end) {
  }
}

}  // namespace

TEST_CASE("spans outside a session record nothing") {
  REQUIRE_FALSE(trace::enabled());
  {
    trace::Span s("before", trace::Category::Compute);
    CHECK_FALSE(s.active());
    s.arg("x", 1);
  }
  // Many disabled spans with arguments leave nothing behind. Their cost (an atomic load and a
  // compare) is measured by bench/trace_overhead_spans.cpp, not asserted here: a timing bound
  // fails on a loaded machine.
  for (int i = 0; i < 1000; ++i) {
    trace::Span s("off", trace::Category::Compute);
    s.arg("i", i);
    CHECK_FALSE(s.active());
  }
  trace::Session session({0, 1, ""});
  CHECK(session.event_count() == 0);
}

TEST_CASE("nested spans with arguments become Chrome trace complete events") {
  trace::Session session({3, 8, "rank 3 (dp 1, pp 0, tp 1)"});
  session.set_metadata("layout", std::string("dp 2 x pp 2 x tp 2"));
  session.set_metadata("flops_per_step", 1.5e9);
  session.set_metadata_null("peak_flops_per_rank");
  {
    trace::Span step("step", trace::Category::Step);
    step.arg("step", 7);
    busy_wait_us(200);
    {
      trace::Span f("forward", trace::Category::Compute);
      f.arg("micro", 2);
      f.arg("stage", 1);
      busy_wait_us(300);
    }
    trace::Span w("wait", trace::Category::Comm);
    w.rename("wait \"all_reduce\" of 4 f32\n");
    busy_wait_us(100);
  }
  trace::counter("loss", 2.5);
  CHECK(session.event_count() == 4);
  const json doc = json::parse(session.to_json());
  CHECK(doc["otherData"]["rank"] == 3);
  CHECK(doc["otherData"]["world_size"] == 8);
  CHECK(doc["otherData"]["layout"] == "dp 2 x pp 2 x tp 2");
  CHECK(doc["otherData"]["flops_per_step"].get<double>() == 1.5e9);
  CHECK(doc["otherData"]["peak_flops_per_rank"].is_null());
  const auto steps = events_named(doc, "step");
  const auto fwd = events_named(doc, "forward");
  const auto wait = events_named(doc, "wait \"all_reduce\" of 4 f32\n");  // escaped and back
  REQUIRE(steps.size() == 1);
  REQUIRE(fwd.size() == 1);
  REQUIRE(wait.size() == 1);
  CHECK(steps[0]["ph"] == "X");
  CHECK(steps[0]["pid"] == 3);
  CHECK(steps[0]["cat"] == "step");
  CHECK(steps[0]["args"]["step"] == 7);
  CHECK(fwd[0]["cat"] == "compute");
  CHECK(fwd[0]["args"]["micro"] == 2);
  CHECK(fwd[0]["args"]["stage"] == 1);
  CHECK(wait[0]["cat"] == "comm");
  // Nesting and durations (microseconds).
  const double s0 = steps[0]["ts"], s1 = s0 + steps[0]["dur"].get<double>();
  const double f0 = fwd[0]["ts"], f1 = f0 + fwd[0]["dur"].get<double>();
  const double w0 = wait[0]["ts"], w1 = w0 + wait[0]["dur"].get<double>();
  CHECK(s0 <= f0);
  CHECK(f1 <= w0);
  CHECK(w1 <= s1);
  CHECK(f0 - s0 >= 200);
  CHECK(fwd[0]["dur"].get<double>() >= 300);
  CHECK(s1 - s0 >= 600);
  CHECK(s0 >= 0);
  const auto loss = events_named(doc, "loss");
  REQUIRE(loss.size() == 1);
  CHECK(loss[0]["ph"] == "C");
  CHECK(loss[0]["args"]["value"] == 2.5);
  bool named = false;
  for (const auto& e : doc["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "process_name")
      named = e["args"]["name"] == "rank 3 (dp 1, pp 0, tp 1)";
  CHECK(named);
}

TEST_CASE("every recording thread gets its own named track") {
  trace::Session session({0, 1, ""});
  { trace::Span s("on main", trace::Category::Compute); }
  std::thread t([] {
    trace::set_thread_name("comm dp");
    trace::Span s("all_reduce dp", trace::Category::Comm);
    s.arg("bytes", 4096);
  });
  t.join();
  std::thread u([] { trace::Span s("unnamed", trace::Category::Other); });
  u.join();
  const auto ranks = tools::parse_trace(session.to_json(), "test");
  REQUIRE(ranks.size() == 1);
  const auto& tracks = ranks[0].tracks;
  REQUIRE(tracks.size() == 3);
  CHECK(tracks[0].tid == 0);
  CHECK(tracks[0].name == "main");
  REQUIRE(tracks[0].spans.size() == 1);
  CHECK(tracks[0].spans[0].name == "on main");
  CHECK(tracks[1].name == "comm dp");
  REQUIRE(tracks[1].spans.size() == 1);
  CHECK(tracks[1].spans[0].cat == trace::Category::Comm);
  CHECK(tracks[1].spans[0].arg("bytes") == 4096);
  CHECK(tracks[2].name == "thread 2");
}

TEST_CASE("explicit-time spans land on the caller's or a named track, relative to time zero") {
  trace::Session session({1, 2, ""});
  const int64_t zero = trace::now_ns();
  session.set_time_zero(zero);
  trace::record("send pp", trace::Category::Comm, zero + 5000, zero + 12500, {{"peer", 0}});
  trace::record_on("cuda:0 stream 0", "gemm", trace::Category::Compute, zero + 1000, zero + 3000);
  trace::record_on("cuda:0 stream 0", "softmax", trace::Category::Compute, zero + 3000,
                   zero + 3500);
  const auto ranks = tools::parse_trace(session.to_json(), "test");
  REQUIRE(ranks.size() == 1);
  REQUIRE(ranks[0].tracks.size() == 2);
  const auto& main = ranks[0].tracks[0];
  REQUIRE(main.spans.size() == 1);
  CHECK(main.spans[0].begin_us == Approx(5.0));
  CHECK(main.spans[0].end_us == Approx(12.5));
  CHECK(main.spans[0].arg("peer") == 0);
  const auto& gpu = ranks[0].tracks[1];
  CHECK(gpu.name == "cuda:0 stream 0");
  REQUIRE(gpu.spans.size() == 2);
  CHECK(gpu.spans[0].name == "gemm");
  CHECK(gpu.spans[1].begin_us == Approx(3.0));
}

TEST_CASE("device spans on the CPU record nothing") {
  trace::Session session({0, 1, ""});
  { trace::DeviceSpan d("forward", trace::Category::Compute, Device::cpu()); }
  trace::flush_device_spans();
  CHECK(session.event_count() == 0);
}

TEST_CASE("one session at a time; a new session starts empty") {
  {
    trace::Session a({0, 1, ""});
    { trace::Span s("x", trace::Category::Compute); }
    CHECK(a.event_count() == 1);
    CHECK_THROWS_AS(trace::Session({0, 1, ""}), Error);
  }
  CHECK_FALSE(trace::enabled());
  trace::Session b({0, 1, ""});
  CHECK(b.event_count() == 0);
}

TEST_CASE("trace files are named per rank and written atomically") {
  CHECK(trace::trace_path_for_rank("run/trace.json", 0) == "run/trace.json");
  CHECK(trace::trace_path_for_rank("run/trace.json", 5) == "run/trace.rank5.json");
  CHECK(trace::trace_path_for_rank("trace", 2) == "trace.rank2.json");
  const auto dir = std::filesystem::temp_directory_path() / "trident_trace_test_files";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "t.json").string();
  {
    trace::Session s({0, 1, ""});
    { trace::Span sp("step", trace::Category::Step); }
    s.write(path);
  }
  const auto ranks = tools::load_run(path);
  REQUIRE(ranks.size() == 1);
  CHECK(ranks[0].main_track()->spans.size() == 1);
  CHECK_THROWS_WITH(tools::load_run((dir / "missing.json").string()),
                    Catch::Contains("missing.json") && Catch::Contains("cannot open"));
  std::filesystem::remove_all(dir);
}
