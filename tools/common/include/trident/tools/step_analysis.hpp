// Where each rank's training steps go, from its trace (trident-report's arithmetic).
//
// The main thread's spans nest; every instant of a step belongs to the innermost span covering
// it, classified by that span's category, except that anything inside an idle span is idle:
//   busy       compute (forward, backward and the step's own time), optimizer, data, other
//              (logging, checkpoints): the rank is working;
//   exposed    comm spans on the main thread: blocked on communication nothing overlaps;
//   bubble     idle spans: a pipeline stage blocked on its neighbours;
//   straggler  the part of an exposed wait during which the collective it waited for was
//              held up by a late rank: a collective's span on a communication thread carries
//              (communicator, group, seq), which names the same collective on every rank; its
//              last rank to start is the straggler, and every other rank's time from its own
//              start to that moment is waiting on it. A wait on the main thread is matched to
//              the collective that finished last within it.
// Shares are of the summed step time, so busy + exposed + bubble + straggler = 100%.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "trident/tools/trace_reader.hpp"

namespace trident::tools {

enum class Share : uint8_t { Compute, Optimizer, Data, Other, Comm, Bubble, Straggler };
constexpr int kNumShares = 7;
const char* share_name(Share s);

struct Segment {
  double begin_us = 0, end_us = 0;
  Share share = Share::Compute;
};

struct Breakdown {  // microseconds
  double step = 0;
  double by_share[kNumShares] = {};
  double at(Share s) const { return by_share[static_cast<int>(s)]; }
  double busy() const;
  double idle() const { return at(Share::Bubble) + at(Share::Straggler); }
  void add(Share s, double us) { by_share[static_cast<int>(s)] += us; }
  Breakdown& operator+=(const Breakdown& o);
};

// One rank's main track, classified, plus what the timeline draws.
struct RankTimeline {
  int rank = 0;
  std::string label;
  std::vector<Segment> segments;                      // sorted, disjoint
  std::vector<std::pair<int64_t, double>> steps;      // (step number, begin us)
  std::vector<std::pair<double, double>> step_spans;  // (begin, end) us, same order
  std::vector<std::pair<double, double>> comm_busy;   // collectives and transfers on MPI threads
  std::vector<double> comm_bytes;                     // bytes of each comm_busy entry
  std::vector<std::pair<double, double>> gpu_busy;    // device spans (tracks "cuda:N")
  // Top-level main-thread spans outside every step, but for communication and idle ones
  // (validation, checkpoints; not the setup's collectives): name, us.
  std::vector<std::pair<std::string, double>> outside_steps;
};

std::vector<RankTimeline> build_timelines(const std::vector<RankTrace>& ranks);

struct RankReport {
  int rank = 0;
  std::string label;
  int steps = 0;
  Breakdown total;
  double comm_thread_us = 0, comm_thread_bytes = 0;  // on MPI threads within the steps
  double gpu_busy_us = 0;                            // device spans within the steps
};

struct RunReport {
  int world_size = 1;
  int skipped_steps = 0;
  int64_t first_step = 0, last_step = 0;  // step numbers analysed
  std::vector<RankReport> ranks;
  Breakdown overall;
  int slowest_rank = 0;  // most busy time per step
  double mean_step_us = 0;
  double flops_per_step = 0;         // model FLOPs of one step of the job, 0 if unknown
  std::optional<double> peak_flops;  // per rank, from the trace metadata (GPU runs)
  std::optional<double> mfu;         // flops_per_step / mean step / (world x peak)
  std::string description;           // layout, model, device
  double window_begin_us = 0, window_end_us = 0;  // the analysed steps' extent, over ranks
  std::vector<std::pair<std::string, double>> outside_steps;  // rank 0's, totals by name
};

// skip: the first steps of each rank left out (warm-up), kept at least one step.
RunReport analyze_run(const std::vector<RankTrace>& ranks,
                      const std::vector<RankTimeline>& timelines, int skip);
std::string format_report(const RunReport& report);

}  // namespace trident::tools
