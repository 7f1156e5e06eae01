// The trace recorder (see trace.hpp): process-wide session state, one track per recording
// thread (found through a thread_local cache checked against a generation counter, so a thread
// registers once per session), and the Chrome trace JSON writer.
#include "trident/trace/trace.hpp"

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <utility>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

#ifdef TRIDENT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "trident/core/cuda.hpp"
#endif

namespace trident::trace {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

struct Event {
  int64_t begin = 0, end = 0;
  const char* name = nullptr;  // a literal, or null when dyn_name holds the name
  std::string dyn_name;
  double value = 0;  // counters
  Category cat = Category::Other;
  char phase = 'X';
  uint8_t nargs = 0;
  Arg args[4] = {};
};

struct Track {
  std::mutex mu;  // guards name and events
  int tid = 0;
  std::string name;
  std::vector<Event> events;
};

struct State {
  std::mutex mu;  // guards the fields below
  bool active = false;
  SessionOptions opts;
  int64_t time_zero = 0;
  std::vector<std::shared_ptr<Track>> tracks;
  std::map<std::string, std::shared_ptr<Track>> virtual_tracks;
  std::vector<std::pair<std::string, std::string>> metadata;  // key, JSON text
};

State& state() {
  static State s;
  return s;
}

// Bumped when a session starts or stops: a thread's cached track is valid while it matches.
std::atomic<uint64_t> g_generation{0};

struct ThreadCache {
  uint64_t generation = 0;
  std::shared_ptr<Track> track;  // keeps the track alive if the session ends meanwhile
  std::string name;
};
thread_local ThreadCache tl_cache;

std::shared_ptr<Track> make_track(State& s, std::string name) {
  auto t = std::make_shared<Track>();
  t->tid = static_cast<int>(s.tracks.size());
  t->name = name.empty() ? str_cat("thread ", t->tid) : std::move(name);
  t->events.reserve(1024);
  s.tracks.push_back(t);
  return t;
}

// The calling thread's track in the current session, or null when none records.
Track* current_track() {
  ThreadCache& c = tl_cache;
  const uint64_t gen = g_generation.load(std::memory_order_acquire);
  if (c.generation != gen) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    c.generation = g_generation.load(std::memory_order_relaxed);
    c.track = s.active ? make_track(s, c.name) : nullptr;
  }
  return c.track.get();
}

void push(Track& t, Event&& e) {
  std::lock_guard<std::mutex> lock(t.mu);
  t.events.push_back(std::move(e));
}

Event make_event(std::string name, Category cat, int64_t begin, int64_t end,
                 std::initializer_list<Arg> args) {
  Event e;
  e.begin = begin;
  e.end = end;
  e.dyn_name = std::move(name);
  e.cat = cat;
  for (const Arg& a : args) {
    if (e.nargs < 4) e.args[e.nargs++] = a;
  }
  return e;
}

void append_micros(std::string& out, int64_t ns) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1000.0);
  out += buf;
}

void append_event(std::string& out, const Event& e, int pid, int tid, int64_t zero) {
  const std::string& name = e.name ? std::string(e.name) : e.dyn_name;
  out += "{\"ph\":\"";
  out += e.phase;
  out += "\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) + ",\"ts\":";
  append_micros(out, e.begin - zero);
  out += ",\"name\":" + json_quote(name);
  if (e.phase == 'C') {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.17g", e.value);
    out += ",\"args\":{\"value\":";
    out += buf;
    out += "}}";
    return;
  }
  out += ",\"cat\":\"";
  out += category_name(e.cat);
  out += "\",\"dur\":";
  append_micros(out, e.end - e.begin);
  if (e.nargs > 0) {
    out += ",\"args\":{";
    for (uint8_t i = 0; i < e.nargs; ++i) {
      if (i) out += ',';
      out += json_quote(e.args[i].key) + ":" + std::to_string(e.args[i].value);
    }
    out += '}';
  }
  out += '}';
}

void append_meta(std::string& out, const char* what, int pid, int tid, const std::string& args) {
  out += str_cat("{\"ph\":\"M\",\"pid\":", pid, ",\"tid\":", tid, ",\"name\":\"", what,
                 "\",\"args\":", args, "}");
}

}  // namespace

const char* category_name(Category c) {
  switch (c) {
    case Category::Compute:
      return "compute";
    case Category::Comm:
      return "comm";
    case Category::Idle:
      return "idle";
    case Category::Optimizer:
      return "optimizer";
    case Category::Data:
      return "data";
    case Category::Checkpoint:
      return "checkpoint";
    case Category::Step:
      return "step";
    case Category::Other:
      return "other";
  }
  return "other";
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void set_thread_name(const std::string& name) {
  ThreadCache& c = tl_cache;
  c.name = name;
  if (c.track && c.generation == g_generation.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(c.track->mu);
    c.track->name = name;
  }
}

void Span::rename(std::string name) {
  if (begin_ >= 0) dyn_name_ = std::move(name);
}

void Span::finish() {
  const int64_t end = now_ns();
  Track* t = current_track();
  if (t == nullptr) return;
  Event e;
  e.begin = begin_;
  e.end = end;
  if (dyn_name_.empty()) {
    e.name = name_;
  } else {
    e.dyn_name = std::move(dyn_name_);
  }
  e.cat = cat_;
  e.nargs = nargs_;
  for (uint8_t i = 0; i < nargs_; ++i) e.args[i] = args_[i];
  push(*t, std::move(e));
}

void record(std::string name, Category cat, int64_t begin_ns, int64_t end_ns,
            std::initializer_list<Arg> args) {
  if (!enabled()) return;
  Track* t = current_track();
  if (t != nullptr) push(*t, make_event(std::move(name), cat, begin_ns, end_ns, args));
}

void record_on(const std::string& track, std::string name, Category cat, int64_t begin_ns,
               int64_t end_ns, std::initializer_list<Arg> args) {
  if (!enabled()) return;
  State& s = state();
  std::shared_ptr<Track> t;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.active) return;
    auto& slot = s.virtual_tracks[track];
    if (!slot) slot = make_track(s, track);
    t = slot;
  }
  push(*t, make_event(std::move(name), cat, begin_ns, end_ns, args));
}

void counter(const char* name, double value) {
  if (!enabled()) return;
  Track* t = current_track();
  if (t == nullptr) return;
  Event e;
  e.phase = 'C';
  e.name = name;
  e.begin = e.end = now_ns();
  e.value = value;
  push(*t, std::move(e));
}

// --- device spans ---------------------------------------------------------------------------
namespace {

#ifdef TRIDENT_WITH_CUDA
struct PendingDeviceSpan {
  const char* name;
  Category cat;
  int device;
  cudaEvent_t begin, end;
  bool ended;
};

// The host time of a reference event on a device's stream.
struct DeviceClock {
  cudaEvent_t ref = nullptr;
  int64_t host_ns = 0;
};

struct DeviceState {
  std::mutex mu;            // guards the fields below
  uint64_t generation = 1;  // bumped by every flush: open spans of an older one are dropped
  std::vector<PendingDeviceSpan> pending;
  std::vector<cudaEvent_t> free_events;
  std::map<int, DeviceClock> clocks;
};

DeviceState& device_state() {
  static DeviceState s;
  return s;
}

cudaStream_t stream_of(int device) {
  return static_cast<cudaStream_t>(cuda_compute_stream(device));
}

cudaEvent_t take_event(DeviceState& s) {
  if (!s.free_events.empty()) {
    cudaEvent_t e = s.free_events.back();
    s.free_events.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreate(&e) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return e;
}

// Waits for the stream to drain, then records the reference event and reads the host clock
// on both sides of its completion: the reference's host time is known to the sync latency.
bool anchor(DeviceClock& c, int device) {
  if (c.ref == nullptr && cudaEventCreate(&c.ref) != cudaSuccess) return false;
  const cudaStream_t st = stream_of(device);
  if (cudaStreamSynchronize(st) != cudaSuccess) return false;
  const int64_t h0 = now_ns();
  if (cudaEventRecord(c.ref, st) != cudaSuccess || cudaEventSynchronize(c.ref) != cudaSuccess)
    return false;
  c.host_ns = (h0 + now_ns()) / 2;
  return true;
}
#endif

}  // namespace

DeviceSpan::DeviceSpan(const char* name, Category cat, Device device) {
#ifdef TRIDENT_WITH_CUDA
  if (!enabled() || !device.is_cuda()) return;
  DeviceState& s = device_state();
  std::lock_guard<std::mutex> lock(s.mu);
  DeviceClock& clock = s.clocks[device.index];
  if (clock.ref == nullptr && !anchor(clock, device.index)) {
    (void)cudaGetLastError();
    return;
  }
  PendingDeviceSpan p{name, cat, device.index, take_event(s), take_event(s), false};
  if (p.begin == nullptr || p.end == nullptr ||
      cudaEventRecord(p.begin, stream_of(device.index)) != cudaSuccess) {
    (void)cudaGetLastError();
    if (p.begin) s.free_events.push_back(p.begin);
    if (p.end) s.free_events.push_back(p.end);
    return;
  }
  s.pending.push_back(p);
  slot_ = static_cast<int64_t>(s.pending.size()) - 1;
  generation_ = s.generation;
#else
  (void)name;
  (void)cat;
  (void)device;
#endif
}

DeviceSpan::~DeviceSpan() {
#ifdef TRIDENT_WITH_CUDA
  if (slot_ < 0) return;
  DeviceState& s = device_state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (generation_ != s.generation || slot_ >= static_cast<int64_t>(s.pending.size())) return;
  PendingDeviceSpan& p = s.pending[static_cast<size_t>(slot_)];
  p.ended = cudaEventRecord(p.end, stream_of(p.device)) == cudaSuccess;
  if (!p.ended) (void)cudaGetLastError();
#endif
}

void flush_device_spans() {
#ifdef TRIDENT_WITH_CUDA
  DeviceState& s = device_state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.pending.empty()) return;
  ++s.generation;
  std::map<int, bool> used;
  for (const PendingDeviceSpan& p : s.pending) {
    const DeviceClock& clock = s.clocks[p.device];
    float ms0 = 0, ms1 = 0;
    if (p.ended && cudaEventSynchronize(p.end) == cudaSuccess &&
        cudaEventElapsedTime(&ms0, clock.ref, p.begin) == cudaSuccess &&
        cudaEventElapsedTime(&ms1, clock.ref, p.end) == cudaSuccess) {
      record_on(str_cat("cuda:", p.device), p.name, p.cat,
                clock.host_ns + static_cast<int64_t>(static_cast<double>(ms0) * 1e6),
                clock.host_ns + static_cast<int64_t>(static_cast<double>(ms1) * 1e6));
    } else {
      (void)cudaGetLastError();
    }
    s.free_events.push_back(p.begin);
    s.free_events.push_back(p.end);
    used[p.device] = true;
  }
  s.pending.clear();
  for (const auto& [device, yes] : used) {
    if (!anchor(s.clocks[device], device)) (void)cudaGetLastError();
  }
#endif
}

Session::Session(SessionOptions opts) : opts_(std::move(opts)) {
  if (opts_.process_name.empty()) opts_.process_name = str_cat("rank ", opts_.rank);
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    TRIDENT_CHECK(!s.active,
                  "trace::Session: a session is already recording in this process; "
                  "end it before starting another");
    s.active = true;
    s.opts = opts_;
    s.time_zero = now_ns();
    s.tracks.clear();
    s.virtual_tracks.clear();
    s.metadata.clear();
    g_generation.fetch_add(1, std::memory_order_acq_rel);
  }
  if (tl_cache.name.empty()) tl_cache.name = "main";
  current_track();  // the constructing thread is track 0
  detail::g_enabled.store(true, std::memory_order_release);
}

Session::~Session() {
  detail::g_enabled.store(false, std::memory_order_release);
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.active = false;
  g_generation.fetch_add(1, std::memory_order_acq_rel);
}

void Session::set_time_zero(int64_t local_ns) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.time_zero = local_ns;
}

int64_t Session::time_zero() const {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.time_zero;
}

namespace {
void put_metadata(const std::string& key, std::string json) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  for (auto& [k, v] : s.metadata) {
    if (k == key) {
      v = std::move(json);
      return;
    }
  }
  s.metadata.emplace_back(key, std::move(json));
}
}  // namespace

void Session::set_metadata(const std::string& key, double value) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  put_metadata(key, buf);
}
void Session::set_metadata(const std::string& key, int64_t value) {
  put_metadata(key, std::to_string(value));
}
void Session::set_metadata(const std::string& key, const std::string& value) {
  put_metadata(key, json_quote(value));
}
void Session::set_metadata_null(const std::string& key) {
  put_metadata(key, "null");
}

size_t Session::event_count() const {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  size_t n = 0;
  for (const auto& t : s.tracks) {
    std::lock_guard<std::mutex> tl(t->mu);
    n += t->events.size();
  }
  return n;
}

std::string Session::to_json() const {
  State& s = state();
  std::vector<std::shared_ptr<Track>> tracks;
  std::vector<std::pair<std::string, std::string>> metadata;
  int64_t zero = 0;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    tracks = s.tracks;
    metadata = s.metadata;
    zero = s.time_zero;
  }
  const int pid = opts_.rank;
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  append_meta(out, "process_name", pid, 0, "{\"name\":" + json_quote(opts_.process_name) + "}");
  out += ",\n";
  append_meta(out, "process_sort_index", pid, 0, str_cat("{\"sort_index\":", pid, "}"));
  for (const auto& t : tracks) {
    std::lock_guard<std::mutex> lock(t->mu);
    out += ",\n";
    append_meta(out, "thread_name", pid, t->tid, "{\"name\":" + json_quote(t->name) + "}");
    out += ",\n";
    append_meta(out, "thread_sort_index", pid, t->tid, str_cat("{\"sort_index\":", t->tid, "}"));
    for (const Event& e : t->events) {
      out += ",\n";
      append_event(out, e, pid, t->tid, zero);
    }
  }
  out +=
      "\n],\n\"otherData\":{\"format\":\"trident-trace-1\",\"rank\":" + std::to_string(opts_.rank) +
      ",\"world_size\":" + std::to_string(opts_.world_size) +
      ",\"process_name\":" + json_quote(opts_.process_name);
  for (const auto& [k, v] : metadata) out += "," + json_quote(k) + ":" + v;
  out += "}}\n";
  return out;
}

void Session::write(const std::string& path) const {
  const std::string json = to_json();
  write_file_atomically(path, [&](std::ostream& o) { o << json; });
}

std::string trace_path_for_rank(const std::string& file, int rank) {
  if (rank == 0) return file;
  const std::string ext = ".json";
  std::string stem = file;
  if (stem.size() >= ext.size() && stem.compare(stem.size() - ext.size(), ext.size(), ext) == 0)
    stem.resize(stem.size() - ext.size());
  return str_cat(stem, ".rank", rank, ".json");
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace trident::trace
