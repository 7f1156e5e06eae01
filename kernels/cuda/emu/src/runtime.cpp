// Trident's CUDA emulation: the runtime API on the CPU. Devices are numbered views of host
// memory with the properties of a named GPU; each stream is a worker thread running its queue in
// order; every queued op carries "tickets" of other streams it must wait for (events, the legacy
// default stream's implicit synchronisation), so ordering between streams and the host behaves
// as on a GPU — and a missing wait gives wrong results, helped by a random delay before each op.
// Device allocations are guarded (AddressSanitizer's redzones in sanitizer builds, a PROT_NONE
// page after the block otherwise) and start as NaN bytes, like uninitialised GPU memory.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emu_runtime.hpp"
#include "trident_cuda_emu.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TRIDENT_EMU_ASAN 1
#endif

struct CUstream_st {};
struct CUevent_st {};
struct CUgraph_st {};
struct CUgraphExec_st {};

namespace cuemu {
namespace {

using Clock = std::chrono::steady_clock;

long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0') ? x : fallback;
}

struct Stream;

// "Stream `s` has completed its op number `ticket`".
struct Ticket {
  Stream* stream;
  uint64_t ticket;
};

struct Op {
  std::function<void()> fn;
  const char* what;
  std::vector<Ticket> waits;
  uint64_t ticket;
};

struct Stream : CUstream_st {
  int device = 0;
  bool blocking = true;  // synchronises with the legacy default stream
  bool legacy = false;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Op> queue;
  uint64_t enqueued = 0;   // tickets handed out (under mu)
  uint64_t completed = 0;  // tickets finished (under mu)
  bool destroyed = false;
  std::thread worker;
  // Stream capture (under mu): what cudaStreamBeginCapture started; work pushed while capturing
  // goes into `graph` instead of the queue.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
  std::thread::id capture_thread;
  struct Graph* graph = nullptr;
  // The stream that began the capture: this one, or the one whose captured event this stream
  // waited on (it joined that capture, as a stream forked by an event does on a GPU).
  Stream* capture_origin = nullptr;
  uint64_t capture_pushes = 0;  // nodes this stream added to the capture
  uint64_t joined_pushes = 0;   // of those, how many another stream of the capture waited for

  void wait_for(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return completed >= ticket; });
  }
  bool done(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(mu);
    return completed >= ticket;
  }
};

// A captured operation: what a stream op would have run, or (make set) what builds that op
// afresh at each cudaGraphLaunch (enqueue_replayable).
struct GraphNode {
  std::function<void()> fn;
  std::function<std::function<void()>()> make;
  const char* what;
};
struct Graph : CUgraph_st {
  std::vector<GraphNode> nodes;
};
struct GraphExec : CUgraphExec_st {
  std::vector<GraphNode> nodes;
};

struct Event : CUevent_st {
  std::mutex mu;
  const Graph* captured_in = nullptr;  // the capture of the latest record, if it was captured
  Stream* captured_on = nullptr;       // its stream, and that stream's node count after it
  uint64_t captured_seq = 0;
  unsigned flags = 0;
  Stream* stream = nullptr;  // of the latest record (nullptr: never recorded)
  uint64_t ticket = 0;
  uint64_t time_ticket = 0;  // the record whose time is in `when`
  Clock::time_point when{};

  // The latest record: the stream (nullptr when never recorded) and its ticket.
  Ticket latest() {
    std::lock_guard<std::mutex> lock(mu);
    return Ticket{stream, ticket};
  }
};

struct Allocation {
  size_t bytes;
  int device;
  void* map_base;  // mmap'ed region (non-ASan builds) or the malloc'ed block
  size_t map_bytes;
};

struct Device {
  cudaDeviceProp props{};
  std::atomic<int> sticky{cudaSuccess};
  std::atomic<size_t> used{0};
  Stream* legacy = nullptr;
};

// The whole emulated machine. Never destroyed: worker threads may still run at exit.
struct Machine {
  std::mutex mu;  // devices' stream lists, allocations, events, attributes
  std::vector<std::unique_ptr<Device>> devices;
  int count = 0;
  cudaError_t count_error = cudaSuccess;
  std::set<Stream*> streams;   // live (not destroyed) streams
  std::vector<void*> retired;  // destroyed streams and events: kept, queued work may name them
  std::map<uintptr_t, Allocation> allocations;  // by user pointer
  std::set<void*> pinned;
  std::map<const void*, int> max_dynamic_smem;
  std::mutex fault_mu;
  std::string last_fault;
  int jitter_us = 50;

  Machine() {
    count = static_cast<int>(env_long("TRIDENT_CUDA_EMU_DEVICES", 8));
    if (count <= 0) {
      count = 0;
      count_error = cudaErrorNoDevice;
    }
    jitter_us = static_cast<int>(std::max(0L, env_long("TRIDENT_CUDA_EMU_JITTER_US", 50)));
    const char* gpu = std::getenv("TRIDENT_CUDA_EMU_GPU");
    const std::string model = gpu != nullptr ? gpu : "h100";
    for (int i = 0; i < count; ++i) {
      auto d = std::make_unique<Device>();
      fill_props(d->props, model, i);
      devices.push_back(std::move(d));
    }
  }

  static void fill_props(cudaDeviceProp& p, const std::string& model, int index) {
    std::memset(&p, 0, sizeof p);
    const char* name = "NVIDIA H100 80GB HBM3";
    size_t gib = 80;
    int sms = 132, major = 9, minor = 0, clock_khz = 1980000, l2 = 50 << 20, bus = 5120;
    size_t optin = 227 * 1024;
    if (model == "h200") {
      name = "NVIDIA H200";
      gib = 141;
    } else if (model == "a100") {
      name = "NVIDIA A100-SXM4-40GB";
      gib = 40;
      sms = 108;
      major = 8;
      clock_khz = 1410000;
      l2 = 40 << 20;
      optin = 163 * 1024;
    }
    std::snprintf(p.name, sizeof p.name, "%s (emulated)", name);
    p.totalGlobalMem = gib << 30;
    const long mb = env_long("TRIDENT_CUDA_EMU_MEMORY_MB", 0);
    if (mb > 0) p.totalGlobalMem = static_cast<size_t>(mb) << 20;
    p.sharedMemPerBlock = 48 * 1024;
    p.sharedMemPerBlockOptin = optin;
    p.sharedMemPerMultiprocessor = optin + 1024;
    p.regsPerBlock = 65536;
    p.warpSize = 32;
    p.maxThreadsPerBlock = 1024;
    p.maxThreadsDim[0] = 1024;
    p.maxThreadsDim[1] = 1024;
    p.maxThreadsDim[2] = 64;
    p.maxGridSize[0] = 2147483647;
    p.maxGridSize[1] = 65535;
    p.maxGridSize[2] = 65535;
    p.clockRate = clock_khz;
    p.memoryClockRate = 2619000;
    p.memoryBusWidth = bus;
    p.l2CacheSize = l2;
    p.multiProcessorCount = sms;
    p.maxThreadsPerMultiProcessor = 2048;
    p.major = major;
    p.minor = minor;
    p.unifiedAddressing = 1;
    p.pciBusID = index + 1;
  }
};

Machine& machine() {
  static Machine* m = new Machine();
  return *m;
}

thread_local int tls_device = 0;
thread_local cudaError_t tls_last_error = cudaSuccess;

bool valid_device(int d) {
  return d >= 0 && d < machine().count;
}

cudaError_t sticky(int device) {
  if (!valid_device(device)) return cudaSuccess;
  return static_cast<cudaError_t>(machine().devices[device]->sticky.load());
}

// Error to return from an API call: a sticky fault of the device wins.
cudaError_t ret(cudaError_t e, int device) {
  const cudaError_t s = sticky(device);
  if (s != cudaSuccess) return s;
  if (e != cudaSuccess) tls_last_error = e;
  return e;
}

void worker_loop(Stream* s);

Stream* new_stream(int device, bool blocking, bool legacy) {
  auto* s = new Stream();
  s->device = device;
  s->blocking = blocking;
  s->legacy = legacy;
  s->worker = std::thread(worker_loop, s);
  s->worker.detach();
  return s;
}

Stream* legacy_stream(int device) {
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.mu);
  Device& d = *m.devices[device];
  if (d.legacy == nullptr) {
    d.legacy = new_stream(device, true, true);
    m.streams.insert(d.legacy);
  }
  return d.legacy;
}

// The stream behind a handle (0 = legacy default of the current device), or nullptr.
Stream* resolve(cudaStream_t handle) {
  if (handle == nullptr) {
    if (!valid_device(tls_device)) return nullptr;
    return legacy_stream(tls_device);
  }
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.mu);
  auto* s = static_cast<Stream*>(handle);
  return m.streams.count(s) != 0 ? s : nullptr;
}

thread_local std::minstd_rand tls_rng{std::random_device{}()};

// --- launch log: every stream op that does device work (a kernel, a cuBLASLt matmul, a memset or
// memcpy, an NCCL call, a host function), counted per name when it has run; a graph's nodes are
// counted at each replay, not at capture. Event records and waits are ordering, not work.
struct LaunchLog {
  std::mutex mu;
  std::map<std::string, long long> counts;
};
LaunchLog& launch_log() {
  static LaunchLog* log = new LaunchLog();  // never destroyed: stream workers may outlive exit
  return *log;
}

void count_launch(const char* what) {
  if (std::strcmp(what, "cudaEventRecord") == 0 || std::strcmp(what, "cudaStreamWaitEvent") == 0) {
    return;
  }
  LaunchLog& log = launch_log();
  std::lock_guard<std::mutex> lock(log.mu);
  ++log.counts[what];
}

// TRIDENT_CUDA_EMU_LAUNCH_LOG=FILE: at exit, "COUNT<tab>NAME" per name, sorted by name; "%p" in
// FILE becomes the process id, "%r" the MPI rank (OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID).
void write_launch_log() {
  const char* e = std::getenv("TRIDENT_CUDA_EMU_LAUNCH_LOG");
  if (e == nullptr || *e == '\0') return;
  std::string rank = "0";
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* r = std::getenv(v)) {
      rank = r;
      break;
    }
  }
  std::string path;
  for (const char* c = e; *c != '\0'; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      path += std::to_string(static_cast<long long>(getpid()));
      ++c;
    } else if (c[0] == '%' && c[1] == 'r') {
      path += rank;
      ++c;
    } else {
      path += *c;
    }
  }
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "[cuda-emu] cannot write the launch log %s\n", path.c_str());
    return;
  }
  for (const auto& kv : launch_counts()) std::fprintf(f, "%lld\t%s\n", kv.second, kv.first.c_str());
  std::fclose(f);
}

const bool g_launch_log_at_exit = [] {
  const char* e = std::getenv("TRIDENT_CUDA_EMU_LAUNCH_LOG");
  if (e != nullptr && *e != '\0') std::atexit(write_launch_log);
  return true;
}();

void worker_loop(Stream* s) {
  for (;;) {
    Op op;
    {
      std::unique_lock<std::mutex> lock(s->mu);
      s->cv.wait(lock, [&] { return !s->queue.empty() || s->destroyed; });
      if (s->queue.empty()) return;  // destroyed and drained
      op = std::move(s->queue.front());
      s->queue.pop_front();
    }
    for (const Ticket& t : op.waits) t.stream->wait_for(t.ticket);
    jitter();
    if (sticky(s->device) == cudaSuccess) {
      try {
        op.fn();
        count_launch(op.what);
      } catch (const std::exception& e) {
        fault(s->device, cudaErrorLaunchFailure, std::string(op.what) + " threw: " + e.what());
      }
    }
    {
      std::lock_guard<std::mutex> lock(s->mu);
      s->completed = op.ticket;
    }
    s->cv.notify_all();
  }
}

// The capture state of a stream.
cudaStreamCaptureStatus capture_status(Stream* s) {
  std::lock_guard<std::mutex> lock(s->mu);
  return s->capture;
}

// Streams capturing now (under g_capture_mu).
std::mutex g_capture_mu;
std::set<Stream*> g_capturing;

// Called by every operation that makes the host wait for a device (or may, as cudaMalloc and
// cudaFree do): when a capture forbids that on this thread (global mode: any thread; thread-local
// mode: its own thread), it is invalidated, and the call must fail with
// cudaErrorStreamCaptureUnsupported (returns true). `own` is the stream the call names, whose
// capture is hit whatever its mode.
bool capture_forbids(const char* who, Stream* own = nullptr) {
  bool hit = false;
  std::lock_guard<std::mutex> lock(g_capture_mu);
  for (Stream* s : g_capturing) {
    std::lock_guard<std::mutex> l(s->mu);
    if (s->capture != cudaStreamCaptureStatusActive) continue;
    const bool forbids = s == own || s->capture_mode == cudaStreamCaptureModeGlobal ||
                         (s->capture_mode == cudaStreamCaptureModeThreadLocal &&
                          s->capture_thread == std::this_thread::get_id());
    if (forbids) {
      s->capture = cudaStreamCaptureStatusInvalidated;
      hit = true;
    }
  }
  if (hit) {
    report(std::string(who) +
           " during a stream capture would wait for the device: "
           "cudaErrorStreamCaptureUnsupported, the capture is invalidated");
  }
  return hit;
}

// Whether the latest record of `event` is a node of a capture still in progress (a GPU refuses
// to query, wait for or time such an event: cudaErrorCapturedEvent); reported under `who`.
bool recorded_in_active_capture(cudaEvent_t event, const char* who) {
  auto* ev = static_cast<Event*>(event);
  const Graph* g = nullptr;
  {
    std::lock_guard<std::mutex> l(ev->mu);
    g = ev->captured_in;
  }
  if (g == nullptr) return false;
  std::lock_guard<std::mutex> cl(g_capture_mu);
  for (Stream* s : g_capturing) {
    std::lock_guard<std::mutex> l(s->mu);
    if (s->graph == g) {
      report(std::string(who) +
             " of an event recorded in a capture in progress: cudaErrorCapturedEvent");
      return true;
    }
  }
  return false;
}

// Queues on a resolved stream; returns the op's ticket (0: recorded by a capture, not queued).
uint64_t push(Stream* s, std::function<void()> fn, const char* what, std::vector<Ticket> waits) {
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture == cudaStreamCaptureStatusActive) {
      s->graph->nodes.push_back(GraphNode{std::move(fn), nullptr, what});
      ++s->capture_pushes;
      return 0;
    }
    if (s->capture == cudaStreamCaptureStatusInvalidated) return 0;  // dropped
  }
  Machine& m = machine();
  // Legacy default stream semantics: an op on the legacy stream waits for all work queued on the
  // device's blocking streams so far, and an op on a blocking stream waits for the legacy
  // stream's work so far. Non-blocking streams take part in neither.
  if (s->legacy) {
    std::vector<Stream*> others;
    {
      std::lock_guard<std::mutex> lock(m.mu);
      for (Stream* o : m.streams) {
        if (o != s && o->device == s->device && o->blocking) others.push_back(o);
      }
    }
    for (Stream* o : others) {
      std::lock_guard<std::mutex> lock(o->mu);
      if (o->enqueued > o->completed) waits.push_back({o, o->enqueued});
    }
  } else if (s->blocking) {
    Stream* l = nullptr;
    {
      std::lock_guard<std::mutex> lock(m.mu);
      l = m.devices[s->device]->legacy;
    }
    if (l != nullptr) {
      std::lock_guard<std::mutex> lock(l->mu);
      if (l->enqueued > l->completed) waits.push_back({l, l->enqueued});
    }
  }
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    ticket = ++s->enqueued;
    s->queue.push_back(Op{std::move(fn), what, std::move(waits), ticket});
  }
  s->cv.notify_all();
  return ticket;
}

// All streams of a device (including legacy), with their current last ticket.
std::vector<Ticket> device_tickets(int device) {
  Machine& m = machine();
  std::vector<Stream*> all;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    for (Stream* s : m.streams) {
      if (s->device == device) all.push_back(s);
    }
  }
  std::vector<Ticket> t;
  for (Stream* s : all) {
    std::lock_guard<std::mutex> lock(s->mu);
    t.push_back({s, s->enqueued});
  }
  return t;
}

// Host synchronisations and cudaMalloc calls so far (host_syncs(), device_mallocs()).
std::atomic<long long> g_host_syncs{0};
std::atomic<long long> g_device_mallocs{0};

void wait_device(int device) {
  for (const Ticket& t : device_tickets(device)) t.stream->wait_for(t.ticket);
}

const Allocation* find_allocation(const void* ptr, uintptr_t* base) {
  Machine& m = machine();
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  auto it = m.allocations.upper_bound(p);
  if (it == m.allocations.begin()) return nullptr;
  --it;
  if (p >= it->first + std::max<size_t>(it->second.bytes, 1)) return nullptr;
  *base = it->first;
  return &it->second;
}

size_t round_up(size_t x, size_t a) {
  return (x + a - 1) / a * a;
}

// Device memory of `bytes`, 256-byte aligned, followed by a guard so that reading or writing
// past the end faults (ASan: exact redzone; otherwise a PROT_NONE page after the 256-byte
// rounded size).
void* guarded_alloc(size_t bytes, Allocation* a) {
  const size_t rounded = round_up(std::max<size_t>(bytes, 1), 256);
#if defined(TRIDENT_EMU_ASAN)
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) return nullptr;
  a->map_base = p;
  a->map_bytes = rounded;
  std::memset(p, 0xff, rounded);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, rounded - bytes);
  return p;
#else
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t body = round_up(rounded, page);
  void* base =
      mmap(nullptr, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  char* guard = static_cast<char*>(base) + body;
  mprotect(guard, page, PROT_NONE);
  a->map_base = base;
  a->map_bytes = body + page;
  char* p = guard - rounded;
  std::memset(p, 0xff, rounded);
  return p;
#endif
}

void guarded_free(const Allocation& a) {
#if defined(TRIDENT_EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(a.map_base, a.map_bytes);
  std::free(a.map_base);
#else
  munmap(a.map_base, a.map_bytes);
#endif
}

}  // namespace

long long host_syncs() {
  return g_host_syncs.load();
}
long long device_mallocs() {
  return g_device_mallocs.load();
}

std::map<std::string, long long> launch_counts() {
  LaunchLog& log = launch_log();
  std::lock_guard<std::mutex> lock(log.mu);
  return log.counts;
}
void reset_launch_counts() {
  LaunchLog& log = launch_log();
  std::lock_guard<std::mutex> lock(log.mu);
  log.counts.clear();
}

// --- internal interface (emu_runtime.hpp) ---------------------------------------------------

int current_device() {
  return tls_device;
}

cudaError_t enqueue(cudaStream_t stream, std::function<void()> op, const char* what) {
  Stream* s = resolve(stream);
  if (s == nullptr) {
    return valid_device(tls_device) ? cudaErrorInvalidResourceHandle : cudaErrorInvalidDevice;
  }
  const cudaError_t st = sticky(s->device);
  if (st != cudaSuccess) return st;
  if (capture_status(s) == cudaStreamCaptureStatusInvalidated) {
    return cudaErrorStreamCaptureInvalidated;
  }
  push(s, std::move(op), what, {});
  return cudaSuccess;
}

cudaError_t enqueue_replayable(cudaStream_t stream, std::function<std::function<void()>()> make,
                               const char* what) {
  Stream* s = resolve(stream);
  if (s == nullptr) {
    return valid_device(tls_device) ? cudaErrorInvalidResourceHandle : cudaErrorInvalidDevice;
  }
  const cudaError_t st = sticky(s->device);
  if (st != cudaSuccess) return st;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture == cudaStreamCaptureStatusInvalidated) return cudaErrorStreamCaptureInvalidated;
    if (s->capture == cudaStreamCaptureStatusActive) {
      s->graph->nodes.push_back(GraphNode{nullptr, std::move(make), what});
      ++s->capture_pushes;
      return cudaSuccess;
    }
  }
  push(s, make(), what, {});
  return cudaSuccess;
}

int stream_device(cudaStream_t stream) {
  Stream* s = resolve(stream);
  return s != nullptr ? s->device : -1;
}

void fault(int device, cudaError_t error, const std::string& message) {
  Machine& m = machine();
  {
    std::lock_guard<std::mutex> lock(m.fault_mu);
    m.last_fault = message;
  }
  if (valid_device(device)) {
    int expected = cudaSuccess;
    if (!m.devices[device]->sticky.compare_exchange_strong(expected, error)) return;
  }
  report(message);
}

void report(const std::string& message) {
  std::fprintf(stderr, "[cuda-emu] %s\n", message.c_str());
  std::fflush(stderr);
}

cudaError_t set_last_error(cudaError_t error) {
  tls_last_error = error;
  return error;
}

bool is_device_range(const void* ptr, size_t bytes, int* device) {
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.mu);
  uintptr_t base = 0;
  const Allocation* a = find_allocation(ptr, &base);
  if (a == nullptr) return false;
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  if (p + bytes > base + a->bytes) return false;
  if (device != nullptr) *device = a->device;
  return true;
}

bool is_pinned_host(const void* ptr) {
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.mu);
  return m.pinned.count(const_cast<void*>(ptr)) != 0;
}

void jitter() {
  const int us = machine().jitter_us;
  if (us <= 0) return;
  const int d = static_cast<int>(tls_rng() % static_cast<unsigned>(us + 1));
  if (d > 0) std::this_thread::sleep_for(std::chrono::microseconds(d));
}

int func_max_dynamic_smem(const void* func) {
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.mu);
  auto it = m.max_dynamic_smem.find(func);
  return it != m.max_dynamic_smem.end() ? it->second : 0;
}

const cudaDeviceProp& device_props(int device) {
  return machine().devices[device]->props;
}

std::string last_fault_message() {
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.fault_mu);
  return m.last_fault;
}

void clear_fault(int device) {
  if (!valid_device(device)) return;
  wait_device(device);
  machine().devices[device]->sticky.store(cudaSuccess);
  Machine& m = machine();
  std::lock_guard<std::mutex> lock(m.fault_mu);
  m.last_fault.clear();
}

}  // namespace cuemu

using cuemu::machine;

// --- errors -------------------------------------------------------------------------------------

const char* cudaGetErrorName(cudaError_t e) {
  if (e == cuemu::kCaptureUnjoined) return "cudaErrorStreamCaptureUnjoined";
  if (e == cuemu::kCapturedEvent) return "cudaErrorCapturedEvent";
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInsufficientDriver:
      return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidDeviceFunction:
      return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorAssert:
      return "cudaErrorAssert";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported:
      return "cudaErrorNotSupported";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched:
      return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureIsolation:
      return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit:
      return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread:
      return "cudaErrorStreamCaptureWrongThread";
    case cudaErrorUnknown:
      return "cudaErrorUnknown";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  if (e == cuemu::kCaptureUnjoined) return "capture unjoined";
  if (e == cuemu::kCapturedEvent) {
    return "operation not permitted on an event last recorded in a capturing stream";
  }
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInsufficientDriver:
      return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    default:
      return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t s = cuemu::sticky(cuemu::tls_device);
  if (s != cudaSuccess) return s;
  const cudaError_t e = cuemu::tls_last_error;
  cuemu::tls_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  const cudaError_t s = cuemu::sticky(cuemu::tls_device);
  return s != cudaSuccess ? s : cuemu::tls_last_error;
}

// --- devices
// --------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  *count = machine().count;
  if (machine().count_error != cudaSuccess) return cuemu::set_last_error(machine().count_error);
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  if (machine().count == 0) return cuemu::set_last_error(cudaErrorNoDevice);
  *device = cuemu::tls_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (machine().count == 0) return cuemu::set_last_error(cudaErrorNoDevice);
  if (!cuemu::valid_device(device)) return cuemu::set_last_error(cudaErrorInvalidDevice);
  cuemu::tls_device = device;
  return cuemu::ret(cudaSuccess, device);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  if (!cuemu::valid_device(device)) return cuemu::set_last_error(cudaErrorInvalidDevice);
  *prop = machine().devices[device]->props;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  if (!cuemu::valid_device(cuemu::tls_device)) return cuemu::set_last_error(cudaErrorNoDevice);
  if (cuemu::capture_forbids("cudaDeviceSynchronize")) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  ++cuemu::g_host_syncs;
  cuemu::wait_device(cuemu::tls_device);
  return cuemu::ret(cudaSuccess, cuemu::tls_device);
}

cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (least != nullptr) *least = 0;
  if (greatest != nullptr) *greatest = -5;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  const int d = cuemu::tls_device;
  if (!cuemu::valid_device(d)) return cuemu::set_last_error(cudaErrorNoDevice);
  const size_t total = machine().devices[d]->props.totalGlobalMem;
  const size_t used = machine().devices[d]->used.load();
  if (free_bytes != nullptr) *free_bytes = used < total ? total - used : 0;
  if (total_bytes != nullptr) *total_bytes = total;
  return cuemu::ret(cudaSuccess, d);
}

// --- memory
// ---------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  const int d = cuemu::tls_device;
  if (ptr == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (!cuemu::valid_device(d)) return cuemu::set_last_error(cudaErrorNoDevice);
  if (cuemu::capture_forbids("cudaMalloc")) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  ++cuemu::g_device_mallocs;
  if (cuemu::sticky(d) != cudaSuccess) return cuemu::sticky(d);
  if (bytes == 0) return cudaSuccess;
  cuemu::Device& dev = *machine().devices[d];
  const size_t rounded = cuemu::round_up(bytes, 256);
  if (dev.used.fetch_add(rounded) + rounded > dev.props.totalGlobalMem) {
    dev.used.fetch_sub(rounded);
    return cuemu::set_last_error(cudaErrorMemoryAllocation);
  }
  cuemu::Allocation a{bytes, d, nullptr, 0};
  void* p = cuemu::guarded_alloc(bytes, &a);
  if (p == nullptr) {
    dev.used.fetch_sub(rounded);
    return cuemu::set_last_error(cudaErrorMemoryAllocation);
  }
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    machine().allocations[reinterpret_cast<uintptr_t>(p)] = a;
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (cuemu::capture_forbids("cudaFree")) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  cuemu::Allocation a{};
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    auto it = machine().allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == machine().allocations.end()) {
      cuemu::report("cudaFree of a pointer that cudaMalloc did not return (or freed twice)");
      return cuemu::set_last_error(cudaErrorInvalidValue);
    }
    a = it->second;
  }
  // cudaFree synchronises the device: queued work may still use the memory.
  ++cuemu::g_host_syncs;
  cuemu::wait_device(a.device);
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    machine().allocations.erase(reinterpret_cast<uintptr_t>(ptr));
  }
  machine().devices[a.device]->used.fetch_sub(cuemu::round_up(a.bytes, 256));
  cuemu::guarded_free(a);
  return cuemu::ret(cudaSuccess, a.device);
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (ptr == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  *ptr = std::aligned_alloc(256, cuemu::round_up(std::max<size_t>(bytes, 1), 256));
  if (*ptr == nullptr) return cuemu::set_last_error(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(machine().mu);
  machine().pinned.insert(*ptr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) {
  return cudaMallocHost(ptr, bytes);
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    if (machine().pinned.erase(ptr) == 0) return cuemu::set_last_error(cudaErrorInvalidValue);
  }
  // Like cudaFree, freeing pinned memory waits for the work that may read it.
  for (int d = 0; d < machine().count; ++d) cuemu::wait_device(d);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  if (attr == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  int device = -1;
  if (cuemu::is_device_range(ptr, 0, &device)) {
    *attr = cudaPointerAttributes{cudaMemoryTypeDevice, device, const_cast<void*>(ptr), nullptr};
  } else if (cuemu::is_pinned_host(ptr)) {
    *attr = cudaPointerAttributes{cudaMemoryTypeHost, cuemu::tls_device, const_cast<void*>(ptr),
                                  const_cast<void*>(ptr)};
  } else {
    *attr = cudaPointerAttributes{cudaMemoryTypeUnregistered, -1, nullptr, const_cast<void*>(ptr)};
  }
  return cudaSuccess;
}

namespace cuemu {
namespace {

// Checks a copy's pointers against its kind; returns the device whose stream runs it.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                       const char* who, int* device, bool* dst_dev, bool* src_dev) {
  int dd = -1, sd = -1;
  *dst_dev = is_device_range(dst, bytes, &dd);
  *src_dev = is_device_range(src, bytes, &sd);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      ok = *dst_dev && !*src_dev;
      break;
    case cudaMemcpyDeviceToHost:
      ok = *src_dev && !*dst_dev;
      break;
    case cudaMemcpyDeviceToDevice:
      ok = *dst_dev && *src_dev;
      break;
    case cudaMemcpyHostToHost:
      ok = !*dst_dev && !*src_dev;
      break;
    case cudaMemcpyDefault:
      ok = true;
      break;
    default:
      ok = false;
  }
  const bool partial = (!*dst_dev && is_device_range(dst, 0, nullptr)) ||
                       (!*src_dev && is_device_range(src, 0, nullptr));
  if (!ok || partial) {
    report(std::string(who) + ": " + std::to_string(bytes) + " bytes, kind " +
           std::to_string(static_cast<int>(kind)) + ": " +
           (partial ? "the range runs past the end of its device allocation"
                    : "a pointer is not of the kind the copy names (device memory must come "
                      "from cudaMalloc)"));
    return cudaErrorInvalidValue;
  }
  *device = *dst_dev ? dd : (*src_dev ? sd : tls_device);
  return cudaSuccess;
}

cudaError_t memcpy_on(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                      cudaStream_t stream, bool synchronous, const char* who) {
  if (bytes == 0) return cudaSuccess;
  int device = 0;
  bool dst_dev = false, src_dev = false;
  const cudaError_t e = check_copy(dst, src, bytes, kind, who, &device, &dst_dev, &src_dev);
  if (e != cudaSuccess) return set_last_error(e);
  Stream* s = stream == nullptr ? (valid_device(device) ? legacy_stream(device) : nullptr)
                                : resolve(stream);
  if (s == nullptr) return set_last_error(cudaErrorInvalidResourceHandle);
  if (sticky(s->device) != cudaSuccess) return sticky(s->device);
  // Pageable host memory: a host-to-device copy reads the source now (staged), a device-to-host
  // copy returns only when done; pinned memory is read/written when the stream gets there.
  std::shared_ptr<std::vector<char>> staged;
  const bool host_src = !src_dev, host_dst = !dst_dev;
  // Under capture: a synchronous copy waits (not allowed), and a copy from or to pageable memory
  // cannot be recorded (a graph copies when it replays, from memory the driver cannot pin).
  const cudaStreamCaptureStatus cap = capture_status(s);
  if (cap == cudaStreamCaptureStatusInvalidated) {
    return set_last_error(cudaErrorStreamCaptureInvalidated);
  }
  if (synchronous || (host_src && !is_pinned_host(src)) || (host_dst && !is_pinned_host(dst))) {
    if (capture_forbids(who, cap == cudaStreamCaptureStatusActive ? s : nullptr)) {
      return set_last_error(cudaErrorStreamCaptureUnsupported);
    }
  }
  if (host_src && !is_pinned_host(src)) {
    staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                 static_cast<const char*>(src) + bytes);
  }
  const bool wait = synchronous || (host_dst && !is_pinned_host(dst));
  const uint64_t ticket =
      push(s, [dst, src, bytes, staged] { std::memcpy(dst, staged ? staged->data() : src, bytes); },
           who, {});
  if (wait) {
    ++g_host_syncs;
    s->wait_for(ticket);
  }
  return ret(cudaSuccess, s->device);
}

cudaError_t memset_on(void* ptr, int value, size_t bytes, cudaStream_t stream, bool synchronous,
                      const char* who) {
  if (bytes == 0) return cudaSuccess;
  int device = -1;
  if (!is_device_range(ptr, bytes, &device)) {
    report(std::string(who) + ": " + std::to_string(bytes) +
           " bytes that are not (all) inside one device allocation");
    return set_last_error(cudaErrorInvalidValue);
  }
  Stream* s = stream == nullptr ? legacy_stream(device) : resolve(stream);
  if (s == nullptr) return set_last_error(cudaErrorInvalidResourceHandle);
  if (sticky(s->device) != cudaSuccess) return sticky(s->device);
  if (capture_status(s) == cudaStreamCaptureStatusInvalidated) {
    return set_last_error(cudaErrorStreamCaptureInvalidated);
  }
  if (synchronous && capture_forbids(who)) return set_last_error(cudaErrorStreamCaptureUnsupported);
  const uint64_t ticket = push(s, [ptr, value, bytes] { std::memset(ptr, value, bytes); }, who, {});
  if (synchronous) {
    ++g_host_syncs;
    s->wait_for(ticket);
  }
  return ret(cudaSuccess, s->device);
}

}  // namespace
}  // namespace cuemu

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cuemu::memcpy_on(dst, src, bytes, kind, nullptr, true, "cudaMemcpy");
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return cuemu::memcpy_on(dst, src, bytes, kind, stream, false, "cudaMemcpyAsync");
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, size_t bytes,
                                cudaStream_t stream) {
  return cuemu::memcpy_on(dst, src, bytes, cudaMemcpyDeviceToDevice, stream, false,
                          "cudaMemcpyPeerAsync");
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  return cuemu::memset_on(ptr, value, bytes, nullptr, true, "cudaMemset");
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  return cuemu::memset_on(ptr, value, bytes, stream, false, "cudaMemsetAsync");
}

// --- streams
// --------------------------------------------------------------------------------------

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, 0);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  return cudaStreamCreateWithPriority(stream, flags, 0);
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags, int) {
  if (stream == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  const int d = cuemu::tls_device;
  if (!cuemu::valid_device(d)) return cuemu::set_last_error(cudaErrorNoDevice);
  cuemu::Stream* s = cuemu::new_stream(d, (flags & cudaStreamNonBlocking) == 0, false);
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    machine().streams.insert(s);
  }
  *stream = s;
  return cuemu::ret(cudaSuccess, d);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  auto* s = static_cast<cuemu::Stream*>(stream);
  {
    std::lock_guard<std::mutex> lock(machine().mu);
    if (machine().streams.erase(s) == 0)
      return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
    machine().retired.push_back(s);
  }
  // Queued work still completes; the worker then exits. The object stays (events may name it).
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->destroyed = true;
  }
  s->cv.notify_all();
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (cuemu::capture_forbids("cudaStreamSynchronize", s)) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  uint64_t t;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    t = s->enqueued;
  }
  ++cuemu::g_host_syncs;
  s->wait_for(t);
  return cuemu::ret(cudaSuccess, s->device);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (cuemu::capture_status(s) != cudaStreamCaptureStatusNone &&
      cuemu::capture_forbids("cudaStreamQuery", s)) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  std::lock_guard<std::mutex> lock(s->mu);
  const cudaError_t st = cuemu::sticky(s->device);
  if (st != cudaSuccess) return st;
  return s->completed >= s->enqueued ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr || event == nullptr)
    return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  auto* ev = static_cast<cuemu::Event*>(event);
  const cuemu::Graph* ev_graph = nullptr;
  cuemu::Stream* ev_stream = nullptr;
  uint64_t ev_seq = 0;
  {
    std::lock_guard<std::mutex> l(ev->mu);
    ev_graph = ev->captured_in;
    ev_stream = ev->captured_on;
    ev_seq = ev->captured_seq;
  }
  {
    // Captures span streams as on a GPU: a stream that waits on an event recorded in an active
    // capture joins it (a fork), and the capture's streams order each other through its events
    // (a join). The graph keeps its nodes in issue order, which honours every such dependency,
    // and replays them in that order on the launch stream.
    std::lock_guard<std::mutex> cl(cuemu::g_capture_mu);
    std::unique_lock<std::mutex> lock(s->mu);
    if (s->capture == cudaStreamCaptureStatusInvalidated) return cudaErrorStreamCaptureInvalidated;
    if (s->capture == cudaStreamCaptureStatusActive) {
      if (ev_graph == s->graph) {
        if (ev_stream != nullptr && ev_stream != s) {
          std::lock_guard<std::mutex> l(ev_stream->mu);
          ev_stream->joined_pushes = std::max(ev_stream->joined_pushes, ev_seq);
        }
        return cudaSuccess;
      }
      s->capture = cudaStreamCaptureStatusInvalidated;
      cuemu::report(
          "cudaStreamWaitEvent on a capturing stream, for an event recorded outside the "
          "capture: cudaErrorStreamCaptureIsolation, the capture is invalidated");
      return cuemu::set_last_error(cudaErrorStreamCaptureIsolation);
    }
    if (ev_graph != nullptr) {
      for (cuemu::Stream* c : cuemu::g_capturing) {
        if (c == s) continue;
        std::lock_guard<std::mutex> l(c->mu);
        if (c->graph != ev_graph || c->capture_origin != c) continue;
        if (c->capture != cudaStreamCaptureStatusActive) return cudaErrorStreamCaptureInvalidated;
        s->capture = cudaStreamCaptureStatusActive;
        s->capture_mode = c->capture_mode;
        s->capture_thread = c->capture_thread;
        s->graph = c->graph;
        s->capture_origin = c;
        s->capture_pushes = 0;
        s->joined_pushes = 0;
        cuemu::g_capturing.insert(s);
        return cudaSuccess;
      }
    }
  }
  std::vector<cuemu::Ticket> waits;
  const cuemu::Ticket last = ev->latest();
  if (last.stream != nullptr) waits.push_back(last);
  if (cuemu::sticky(s->device) != cudaSuccess) return cuemu::sticky(s->device);
  cuemu::push(
      s, [] {}, "cudaStreamWaitEvent", std::move(waits));
  return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (fn == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  const cudaError_t e = cuemu::enqueue(
      stream, [fn, user_data] { fn(user_data); }, "cudaLaunchHostFunc");
  return e == cudaSuccess ? e : cuemu::set_last_error(e);
}

// --- events
// ---------------------------------------------------------------------------------------

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, 0);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  auto* ev = new cuemu::Event();
  ev->flags = flags;
  *event = ev;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  // Queued records may still name the event: it is retired, not freed (a few bytes per event).
  std::lock_guard<std::mutex> lock(machine().mu);
  machine().retired.push_back(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr || event == nullptr)
    return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (cuemu::sticky(s->device) != cudaSuccess) return cuemu::sticky(s->device);
  auto* ev = static_cast<cuemu::Event*>(event);
  std::lock_guard<std::mutex> lock(ev->mu);  // keeps record order equal to ticket order
  {
    std::lock_guard<std::mutex> l(s->mu);
    if (s->capture == cudaStreamCaptureStatusInvalidated) return cudaErrorStreamCaptureInvalidated;
    if (s->capture == cudaStreamCaptureStatusActive) {  // an event record node
      s->graph->nodes.push_back(cuemu::GraphNode{[ev] {
                                                   std::lock_guard<std::mutex> g(ev->mu);
                                                   ev->when = cuemu::Clock::now();
                                                 },
                                                 nullptr, "cudaEventRecord"});
      ev->captured_in = s->graph;
      ev->captured_on = s;
      ev->captured_seq = ++s->capture_pushes;
      return cudaSuccess;
    }
  }
  ev->captured_in = nullptr;
  ev->captured_on = nullptr;
  const uint64_t ticket = cuemu::push(s,
                                      [ev] {
                                        std::lock_guard<std::mutex> l(ev->mu);
                                        ev->when = cuemu::Clock::now();
                                        ev->time_ticket = ev->ticket;
                                      },
                                      "cudaEventRecord", {});
  ev->stream = s;
  ev->ticket = ticket;
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  // An unsafe call under a global-mode capture, from any thread (a watchdog polling its events
  // breaks a capture on a GPU: PyTorch's allocator and NCCL watchdog avoid it for that reason).
  if (cuemu::capture_forbids("cudaEventQuery")) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  if (cuemu::recorded_in_active_capture(event, "cudaEventQuery")) {
    return cuemu::set_last_error(cuemu::kCapturedEvent);
  }
  const cuemu::Ticket last = static_cast<cuemu::Event*>(event)->latest();
  cuemu::Stream* s = last.stream;
  const uint64_t t = last.ticket;
  if (s == nullptr) return cudaSuccess;
  if (cuemu::sticky(s->device) != cudaSuccess) return cuemu::sticky(s->device);
  return s->done(t) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (cuemu::recorded_in_active_capture(event, "cudaEventSynchronize")) {
    return cuemu::set_last_error(cuemu::kCapturedEvent);
  }
  const cuemu::Ticket last = static_cast<cuemu::Event*>(event)->latest();
  cuemu::Stream* s = last.stream;
  const uint64_t t = last.ticket;
  if (s == nullptr) return cudaSuccess;
  if (cuemu::capture_forbids("cudaEventSynchronize")) {
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  ++cuemu::g_host_syncs;
  s->wait_for(t);
  return cuemu::ret(cudaSuccess, s->device);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr) {
    return cuemu::set_last_error(cudaErrorInvalidValue);
  }
  auto* a = static_cast<cuemu::Event*>(start);
  auto* b = static_cast<cuemu::Event*>(end);
  if ((a->flags & cudaEventDisableTiming) || (b->flags & cudaEventDisableTiming)) {
    return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  }
  std::lock_guard<std::mutex> la(a->mu);
  std::lock_guard<std::mutex> lb(b->mu);
  if (a->stream == nullptr || b->stream == nullptr)
    return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (a->time_ticket != a->ticket || b->time_ticket != b->ticket) return cudaErrorNotReady;
  *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return cuemu::set_last_error(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    const int d = cuemu::valid_device(cuemu::tls_device) ? cuemu::tls_device : 0;
    if (value < 0 ||
        static_cast<size_t>(value) > machine().devices[d]->props.sharedMemPerBlockOptin) {
      cuemu::report("cudaFuncSetAttribute: MaxDynamicSharedMemorySize " + std::to_string(value) +
                    " exceeds the device's opt-in limit");
      return cuemu::set_last_error(cudaErrorInvalidValue);
    }
    std::lock_guard<std::mutex> lock(machine().mu);
    machine().max_dynamic_smem[func] = value;
  }
  return cudaSuccess;
}

// --- stream capture and graphs
// ------------------------------------------------------------------------

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr) {  // the legacy default stream cannot capture
    return cuemu::set_last_error(cudaErrorStreamCaptureUnsupported);
  }
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed) {
    return cuemu::set_last_error(cudaErrorInvalidValue);
  }
  if (cuemu::sticky(s->device) != cudaSuccess) return cuemu::sticky(s->device);
  std::lock_guard<std::mutex> cl(cuemu::g_capture_mu);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture != cudaStreamCaptureStatusNone) {
      return cuemu::set_last_error(cudaErrorIllegalState);
    }
    s->capture = cudaStreamCaptureStatusActive;
    s->capture_mode = mode;
    s->capture_thread = std::this_thread::get_id();
    s->graph = new cuemu::Graph();
    s->capture_origin = s;
    s->capture_pushes = 0;
    s->joined_pushes = 0;
  }
  cuemu::g_capturing.insert(s);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  *graph = nullptr;
  cuemu::Stream* s = stream == nullptr ? nullptr : cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorIllegalState);
  std::lock_guard<std::mutex> cl(cuemu::g_capture_mu);
  cuemu::Graph* g = nullptr;
  cudaStreamCaptureStatus status;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->capture == cudaStreamCaptureStatusNone) {
      return cuemu::set_last_error(cudaErrorIllegalState);
    }
    if (s->capture_origin != s) {  // a stream that joined the capture cannot end it
      return cuemu::set_last_error(cudaErrorStreamCaptureUnmatched);
    }
    if (s->capture_mode != cudaStreamCaptureModeRelaxed &&
        s->capture_thread != std::this_thread::get_id()) {
      return cuemu::set_last_error(cudaErrorStreamCaptureWrongThread);
    }
    status = s->capture;
    g = s->graph;
    s->graph = nullptr;
    s->capture = cudaStreamCaptureStatusNone;
    s->capture_origin = nullptr;
  }
  cuemu::g_capturing.erase(s);
  // The streams that joined the capture leave it; each must have been joined back (the origin,
  // or another of its streams, waited on an event recorded after its last node).
  bool unjoined = false;
  for (auto it = cuemu::g_capturing.begin(); it != cuemu::g_capturing.end();) {
    cuemu::Stream* c = *it;
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->capture_origin != s) {
      ++it;
      continue;
    }
    if (c->capture == cudaStreamCaptureStatusInvalidated) status = c->capture;
    unjoined = unjoined || c->capture_pushes > c->joined_pushes;
    c->capture = cudaStreamCaptureStatusNone;
    c->graph = nullptr;
    c->capture_origin = nullptr;
    it = cuemu::g_capturing.erase(it);
  }
  if (status == cudaStreamCaptureStatusInvalidated) {
    delete g;
    return cuemu::set_last_error(cudaErrorStreamCaptureInvalidated);
  }
  if (unjoined) {
    delete g;
    cuemu::report(
        "cudaStreamEndCapture: a stream that joined the capture has work after its last event "
        "the capture waited on: cudaErrorStreamCaptureUnjoined");
    return cuemu::set_last_error(cuemu::kCaptureUnjoined);
  }
  *graph = g;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (s->legacy) {
    // Asking about the legacy stream while a global capture runs is itself an implicit sync.
    std::lock_guard<std::mutex> cl(cuemu::g_capture_mu);
    for (cuemu::Stream* c : cuemu::g_capturing) {
      std::lock_guard<std::mutex> l(c->mu);
      if (c->capture_mode == cudaStreamCaptureModeGlobal) {
        return cuemu::set_last_error(cudaErrorStreamCaptureImplicit);
      }
    }
  }
  *status = cuemu::capture_status(s);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (exec == nullptr || graph == nullptr) return cuemu::set_last_error(cudaErrorInvalidValue);
  auto* e = new cuemu::GraphExec();
  e->nodes = static_cast<cuemu::Graph*>(graph)->nodes;
  *exec = e;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  cuemu::Stream* s = cuemu::resolve(stream);
  if (s == nullptr) return cuemu::set_last_error(cudaErrorInvalidResourceHandle);
  if (cuemu::sticky(s->device) != cudaSuccess) return cuemu::sticky(s->device);
  if (cuemu::capture_status(s) == cudaStreamCaptureStatusInvalidated) {
    return cuemu::set_last_error(cudaErrorStreamCaptureInvalidated);
  }
  // Each node is queued as the op it was captured from (or recorded again, under capture).
  for (const cuemu::GraphNode& n : static_cast<cuemu::GraphExec*>(exec)->nodes) {
    cuemu::push(s, n.make ? n.make() : n.fn, n.what, {});
  }
  return cuemu::ret(cudaSuccess, s->device);
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete static_cast<cuemu::GraphExec*>(exec);  // queued replays hold copies of the nodes
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete static_cast<cuemu::Graph*>(graph);
  return cudaSuccess;
}
