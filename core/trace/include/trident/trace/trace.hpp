// Timeline tracing: a per-process recorder of spans written as Chrome trace JSON, which
// Perfetto (ui.perfetto.dev) and chrome://tracing open, and which trident-report reads.
//
// Model. A span is (name, category, begin, end, up to 4 integer arguments) on a track; each
// thread that records gets its own track (the main thread, every communicator's MPI thread),
// and code holding device timestamps can add spans to a named virtual track (record_on). Spans
// on one thread nest (RAII); times are steady-clock nanoseconds, written as microseconds
// relative to the session's time zero. The trainer sets that zero from a barrier so that all
// ranks' files share one time axis (see parallel/train/src/trainer.cpp, start_trace).
//
//   trace::Session session({rank, "rank 3 (dp 1, pp 0, tp 1)"});   // starts recording
//   { trace::Span s("forward", trace::Category::Compute); s.arg("micro", i); ... }
//   session.write("trace.rank3.json");
//
// Cost. With no Session alive a Span is one relaxed atomic load and a branch in its
// constructor and a compare in its destructor: instrumented code is always compiled in. While
// recording, a span takes two clock reads and an append under its track's own mutex (only
// contended while the file is written). Span names are `const char*` literals that must
// outlive the session; rename() takes a dynamic name (build it only when active()).
//
// Files. One file per rank; the convention trident-train uses (trace_path_for_rank) is FILE
// for rank 0 and FILE with ".json" replaced by ".rank<N>.json" for rank N. Each file is
// {"traceEvents": [...], "otherData": {...metadata...}}; pid is the rank, tid the track.
// Events: "X" complete events with "cat" the category name, "C" counters, "M" names.
//
// GPU spans. DeviceSpan records a pair of cudaEvents around a region on the CUDA backend's
// compute stream (cuda_compute_stream); flush_device_spans(), called once a step, waits for
// them and converts them to host time against a reference event whose host time was read
// around its completion on an idle stream (re-anchored at every flush, so the float
// milliseconds of cudaEventElapsedTime never span more than a step). They land on the track
// "cuda:N"; trident-report shows them as the GPU-busy strip and share. Other device code can
// add spans with host times through record_on(). Without CUDA, or on the CPU, DeviceSpan is a
// no-op; a CUDA error while tracing drops the span rather than failing the job.
#pragma once
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/device.hpp"

namespace trident::trace {

// What a span's time is spent on; trident-report's shares are built from these.
//   Compute     kernels / model forward and backward on this rank
//   Comm        blocked waiting for communication (on the main thread: exposed), or a
//               collective or transfer executing (on a communication thread)
//   Idle        blocked on another rank with nothing to do: the pipeline bubble
//   Optimizer   optimizer step, gradient clipping, zeroing gradients
//   Data        loading and moving batches
//   Checkpoint  writing or reading checkpoints
//   Step        one training step (contains the others; its own time counts as compute)
//   Other       logging, evaluation bookkeeping
enum class Category : uint8_t { Compute, Comm, Idle, Optimizer, Data, Checkpoint, Step, Other };
const char* category_name(Category c);  // "compute", "comm", ...

struct Arg {
  const char* key;  // a literal
  int64_t value;
};

namespace detail {
extern std::atomic<bool> g_enabled;
}

// True while a Session records.
inline bool enabled() {
  return detail::g_enabled.load(std::memory_order_relaxed);
}

// Steady-clock nanoseconds (the clock of every span).
int64_t now_ns();

// Names the calling thread's track ("main", "comm dp"). Cheap; may be called before a session.
void set_thread_name(const std::string& name);

// A span on the calling thread's track, from construction to destruction.
class Span {
 public:
  Span(const char* name, Category cat) noexcept : name_(name), cat_(cat) {
    if (enabled()) begin_ = now_ns();
  }
  ~Span() {
    if (begin_ >= 0) finish();
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

  bool active() const { return begin_ >= 0; }
  // Up to 4 arguments; later ones are dropped. No-op when inactive.
  void arg(const char* key, int64_t value) {
    if (begin_ >= 0 && nargs_ < 4) args_[nargs_++] = Arg{key, value};
  }
  void rename(std::string name);

 private:
  void finish();
  const char* name_;
  std::string dyn_name_;
  int64_t begin_ = -1;
  Category cat_;
  uint8_t nargs_ = 0;
  Arg args_[4] = {};
};

// A span with explicit times (steady-clock ns) on the calling thread's track: for work whose
// end is observed elsewhere (an MPI request found complete by polling).
void record(std::string name, Category cat, int64_t begin_ns, int64_t end_ns,
            std::initializer_list<Arg> args = {});
// The same on a named virtual track (a GPU stream), created on first use.
void record_on(const std::string& track, std::string name, Category cat, int64_t begin_ns,
               int64_t end_ns, std::initializer_list<Arg> args = {});
// A counter sample ("C" event): Perfetto draws it as a graph (bytes in use, loss).
void counter(const char* name, double value);

// A span of work queued on a CUDA device's compute stream (see "GPU spans" above).
class DeviceSpan {
 public:
  DeviceSpan(const char* name, Category cat, Device device);
  ~DeviceSpan();
  DeviceSpan(const DeviceSpan&) = delete;
  DeviceSpan& operator=(const DeviceSpan&) = delete;

 private:
  int64_t slot_ = -1;
  uint64_t generation_ = 0;
};
// Waits for the device spans recorded since the last flush and adds them to the trace.
void flush_device_spans();

struct SessionOptions {
  int rank = 0;
  int world_size = 1;
  std::string process_name;  // the label of this rank's row; empty: "rank N"
};

// Records while alive (at most one Session per process; a second one throws trident::Error).
// The constructing thread's track is tid 0 and named "main" unless named before.
class Session {
 public:
  explicit Session(SessionOptions opts);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const SessionOptions& options() const { return opts_; }
  // The local steady-clock time written as 0 (default: when the session started).
  void set_time_zero(int64_t local_ns);
  int64_t time_zero() const;
  // Metadata written under "otherData": a JSON value given as text (number, string, null).
  void set_metadata(const std::string& key, double value);
  void set_metadata(const std::string& key, int64_t value);
  void set_metadata(const std::string& key, const std::string& value);
  void set_metadata_null(const std::string& key);
  // Events recorded so far on every track (metadata events not counted).
  size_t event_count() const;
  // The Chrome trace JSON of everything recorded so far.
  std::string to_json() const;
  // Writes to_json() to `path` through a temporary file and a rename; throws trident::Error
  // naming the path when it cannot.
  void write(const std::string& path) const;

 private:
  SessionOptions opts_;
};

// FILE for rank 0; FILE without a trailing ".json", plus ".rank<N>.json", for rank N.
std::string trace_path_for_rank(const std::string& file, int rank);

// JSON string escaping (quotes included), shared with the tools.
std::string json_quote(const std::string& s);

}  // namespace trident::trace
