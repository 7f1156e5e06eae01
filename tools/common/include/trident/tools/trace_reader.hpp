// Reading trident-train's Chrome trace files back (format: trident/trace/trace.hpp).
// A run is rank 0's FILE plus FILE.rank<N>.json for the other ranks, or one merged file holding
// every rank (trident-report --merge writes it; Perfetto opens it).
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trident/trace/trace.hpp"

namespace trident::tools {

struct SpanRecord {
  std::string name;
  trace::Category cat = trace::Category::Other;
  double begin_us = 0, end_us = 0;
  std::map<std::string, int64_t> args;
  bool has(const char* key) const { return args.count(key) != 0; }
  int64_t arg(const char* key, int64_t fallback = -1) const;
};

struct TrackRecord {
  int tid = 0;
  std::string name;
  std::vector<SpanRecord> spans;  // sorted by begin, then longest first
};

struct RankTrace {
  int rank = 0;
  int world_size = 1;
  std::string process_name;
  nlohmann::json metadata = nlohmann::json::object();  // the file's otherData for this rank
  std::vector<TrackRecord> tracks;                     // sorted by tid; tid 0 is "main"
  const TrackRecord* main_track() const;
};

// Category by name ("compute", ...); unknown names are Other.
trace::Category parse_category(const std::string& name);

// One RankTrace per pid found in the JSON text (`what` names the source in errors).
std::vector<RankTrace> parse_trace(const std::string& json_text, const std::string& what);
// Every rank of the run whose rank-0 (or merged) file is `file`, ordered by rank. Throws
// trident::Error naming a missing or malformed file, or a rank missing from the set.
std::vector<RankTrace> load_run(const std::string& file);
// One Chrome trace JSON with every event of every file (pids are ranks); otherData holds
// {"ranks": [each file's otherData]}.
std::string merge_trace_files(const std::vector<std::string>& files);
// The files of the run whose rank-0 file is `file`: it and FILE.rank<N>.json, N < world_size.
std::vector<std::string> run_files(const std::string& file);

std::string read_text_file(const std::string& path);

}  // namespace trident::tools
