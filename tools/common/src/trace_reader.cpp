#include "trident/tools/trace_reader.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "trident/core/error.hpp"

namespace trident::tools {

using nlohmann::json;

int64_t SpanRecord::arg(const char* key, int64_t fallback) const {
  const auto it = args.find(key);
  return it == args.end() ? fallback : it->second;
}

const TrackRecord* RankTrace::main_track() const {
  for (const auto& t : tracks)
    if (t.tid == 0) return &t;
  return nullptr;
}

trace::Category parse_category(const std::string& name) {
  using trace::Category;
  for (Category c : {Category::Compute, Category::Comm, Category::Idle, Category::Optimizer,
                     Category::Data, Category::Checkpoint, Category::Step, Category::Other}) {
    if (name == trace::category_name(c)) return c;
  }
  return Category::Other;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TRIDENT_CHECK(in.good(), path, ": cannot open (is the path right, and did every rank finish?)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(str_cat(what, ": not valid JSON (", e.what(), ")"));
  }
}

const json& events_of(const json& doc, const std::string& what) {
  if (doc.is_array()) return doc;
  TRIDENT_CHECK(doc.is_object() && doc.contains("traceEvents") && doc["traceEvents"].is_array(),
                what, ": not a Chrome trace (no traceEvents array)");
  return doc["traceEvents"];
}

}  // namespace

std::vector<RankTrace> parse_trace(const std::string& json_text, const std::string& what) {
  const json doc = parse_json(json_text, what);
  const json& events = events_of(doc, what);
  std::map<int, RankTrace> ranks;
  std::map<std::pair<int, int>, TrackRecord> tracks;
  for (const json& e : events) {
    if (!e.is_object() || !e.contains("ph") || !e.contains("pid")) continue;
    const std::string ph = e["ph"].get<std::string>();
    const int pid = e["pid"].get<int>();
    const int tid = e.value("tid", 0);
    RankTrace& r = ranks[pid];
    r.rank = pid;
    TrackRecord& t = tracks[{pid, tid}];
    t.tid = tid;
    if (ph == "M") {
      const std::string name = e.value("name", "");
      if (name == "process_name") r.process_name = e["args"].value("name", "");
      if (name == "thread_name") t.name = e["args"].value("name", "");
      continue;
    }
    if (ph != "X") continue;
    SpanRecord s;
    s.name = e.value("name", "");
    s.cat = parse_category(e.value("cat", "other"));
    s.begin_us = e.value("ts", 0.0);
    s.end_us = s.begin_us + e.value("dur", 0.0);
    if (e.contains("args") && e["args"].is_object()) {
      for (const auto& [k, v] : e["args"].items())
        if (v.is_number_integer()) s.args[k] = v.get<int64_t>();
    }
    t.spans.push_back(std::move(s));
  }
  for (auto& [key, t] : tracks) {
    std::sort(t.spans.begin(), t.spans.end(), [](const SpanRecord& a, const SpanRecord& b) {
      return a.begin_us != b.begin_us ? a.begin_us < b.begin_us : a.end_us > b.end_us;
    });
    if (t.name.empty()) t.name = t.tid == 0 ? "main" : str_cat("thread ", t.tid);
    ranks[key.first].tracks.push_back(std::move(t));
  }
  // Metadata: a single rank's otherData, or a merged file's otherData.ranks.
  std::vector<json> metas;
  if (doc.is_object() && doc.contains("otherData")) {
    const json& od = doc["otherData"];
    if (od.contains("ranks") && od["ranks"].is_array()) {
      for (const json& m : od["ranks"]) metas.push_back(m);
    } else {
      metas.push_back(od);
    }
  }
  for (const json& m : metas) {
    if (!m.is_object() || !m.contains("rank")) continue;
    auto it = ranks.find(m["rank"].get<int>());
    if (it != ranks.end()) it->second.metadata = m;
  }
  std::vector<RankTrace> out;
  for (auto& [pid, r] : ranks) {
    r.world_size = r.metadata.value("world_size", 1);
    std::sort(r.tracks.begin(), r.tracks.end(),
              [](const TrackRecord& a, const TrackRecord& b) { return a.tid < b.tid; });
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::string> run_files(const std::string& file) {
  const auto first = parse_trace(read_text_file(file), file);
  TRIDENT_CHECK(!first.empty(), file, ": holds no trace events");
  std::vector<std::string> files{file};
  if (first.size() > 1) return files;  // merged
  for (int r = 1; r < first[0].world_size; ++r)
    files.push_back(trace::trace_path_for_rank(file, r));
  return files;
}

std::vector<RankTrace> load_run(const std::string& file) {
  std::vector<RankTrace> all = parse_trace(read_text_file(file), file);
  TRIDENT_CHECK(!all.empty(), file, ": holds no trace events");
  const int world = all[0].world_size;
  if (all.size() == 1) {
    for (int r = 1; r < world; ++r) {
      const std::string path = trace::trace_path_for_rank(file, r);
      auto more = parse_trace(read_text_file(path), path);
      TRIDENT_CHECK(more.size() == 1 && more[0].rank == r, path, ": expected the trace of rank ", r,
                    " alone");
      all.push_back(std::move(more[0]));
    }
  }
  std::sort(all.begin(), all.end(),
            [](const RankTrace& a, const RankTrace& b) { return a.rank < b.rank; });
  TRIDENT_CHECK(static_cast<int>(all.size()) == world, file, ": the run has ", world, " ranks but ",
                all.size(), " traces were found");
  for (int r = 0; r < world; ++r)
    TRIDENT_CHECK(all[static_cast<size_t>(r)].rank == r, file, ": rank ", r, " is missing");
  return all;
}

std::string merge_trace_files(const std::vector<std::string>& files) {
  json events = json::array();
  json metas = json::array();
  for (const auto& f : files) {
    const json doc = parse_json(read_text_file(f), f);
    for (const json& e : events_of(doc, f)) events.push_back(e);
    if (doc.is_object() && doc.contains("otherData")) metas.push_back(doc["otherData"]);
  }
  json out = {{"displayTimeUnit", "ms"},
              {"traceEvents", std::move(events)},
              {"otherData", {{"format", "trident-trace-1"}, {"ranks", std::move(metas)}}}};
  return out.dump() + "\n";
}

}  // namespace trident::tools
