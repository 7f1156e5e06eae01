// NcclCommunicator: NCCL collectives on a communication stream ordered with the compute
// stream by events, a watchdog thread for errors and timeouts, and MPI for host buffers
// (see nccl_communicator.hpp). Compiled in CUDA builds where NCCL was found.
#if defined(TRIDENT_WITH_NCCL)
#include "trident/parallel/nccl_communicator.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "device_staging.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#include "trident/parallel/mpi_runtime.hpp"

namespace trident {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;
// How often the watchdog looks at in-flight collectives, and the issuing thread at NCCL's
// progress while a non-blocking call is in progress.
constexpr std::chrono::microseconds kPollInterval{200};

void check_cuda(cudaError_t rc, const std::string& what) {
  if (rc != cudaSuccess) throw Error(str_cat(what, ": ", cudaGetErrorString(rc)));
}

// --- RAII handles -------------------------------------------------------------------------------

// `timing`: the event can be given to cudaEventElapsedTime (the collectives' start, end and
// consumer events); the compute-stream ordering event needs no clock.
class CudaEvent {
 public:
  explicit CudaEvent(bool timing = false) {
    check_cuda(
        cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming),
        "cudaEventCreate");
  }
  ~CudaEvent() { cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// A non-blocking stream of the highest priority, so collectives are not queued behind the
// compute kernels they overlap.
class CudaStream {
 public:
  CudaStream() {
    int least = 0, greatest = 0;
    check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest),
               "cudaDeviceGetStreamPriorityRange");
    check_cuda(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest),
               "cudaStreamCreateWithPriority");
  }
  ~CudaStream() { cudaStreamDestroy(stream_); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
    check_cuda(cudaMemset(ptr_, 0, bytes), "cudaMemset");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

// Makes `device` current for the scope and restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Max:
      return ncclMax;
    case ReduceOp::Min:
      return ncclMin;
    case ReduceOp::Avg:
      return ncclAvg;
  }
  throw Error("unknown reduce op");
}

std::string elements(size_t count, DType dtype) {
  return str_cat(count, " ", dtype_name(dtype));
}

// The CUDA backend's stream of `device` (core/cuda.hpp).
cudaStream_t compute_stream(int device) {
  return static_cast<cudaStream_t>(cuda_compute_stream(device));
}

bool nccl_failed(ncclResult_t r) {
  return r != ncclSuccess && r != ncclInProgress;
}

}  // namespace

class NcclWork;
using IssueFn = std::function<ncclResult_t(ncclComm_t, cudaStream_t)>;

struct GroupedOp {
  std::shared_ptr<NcclWork> work;
  IssueFn issue;
  std::vector<const void*> buffers;  // device memory the operation reads or writes
};

struct NcclCommState {
  ncclComm_t comm = nullptr;  // null once aborted or destroyed
  int device = 0, rank = 0, size = 1, world_rank = 0;
  std::string name;
  MpiCommunicator* host = nullptr;
  std::unique_ptr<CudaStream> stream;
  std::unique_ptr<CudaEvent> ready;       // recorded on the compute stream at each issue
  std::unique_ptr<DeviceBuffer> scratch;  // one int for barrier()
  std::atomic<int64_t> timeout_ms{300000};
  std::atomic<bool> abort_job_on_timeout{true};

  // Serialises NCCL calls on `comm` (issue, split, abort, destroy). Taken before `mu`.
  std::mutex issue_mu;
  bool grouping = false;  // under issue_mu
  std::vector<GroupedOp> group;

  std::mutex mu;                                    // guards the fields below
  std::condition_variable cv;                       // in_flight changed, or stopping
  std::deque<std::shared_ptr<NcclWork>> in_flight;  // issued, oldest first
  Clock::time_point last_progress = Clock::now();
  bool stopping = false;
  std::string failure;  // why the communicator was aborted; empty while usable
  std::thread watchdog;

  std::string context(const std::string& what) const {
    return str_cat("rank ", world_rank, ": ", what, " on communicator '", name, "' (rank ", rank,
                   " of ", size, ")");
  }
  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms.load()); }
  std::string timeout_message(const std::string& what) const {
    return str_cat(context(what), " did not finish within ",
                   static_cast<double>(timeout_ms.load()) / 1000.0,
                   " s: a peer rank may have died, hung or skipped this call");
  }
  std::string nccl_message(const std::string& what, ncclResult_t r) const {
    std::string text = str_cat(context(what), " failed: NCCL error ", static_cast<int>(r), " (",
                               ncclGetErrorString(r), ")");
    const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
    if (last != nullptr && last[0] != '\0') text += str_cat(": ", last);
    return text;
  }
};

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclCommState> comm, std::string what)
      : comm_(std::move(comm)), what_(std::move(what)) {}

  // Orders the compute stream after the operation. The first call also records where the
  // compute stream reached the wait (`arrived_`), so stall_seconds() can tell how long it
  // stood still there.
  void wait() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_) std::rethrow_exception(error_);
    TRIDENT_CHECK(done_ != nullptr, comm_->context(what_),
                  ": issued between group_start() and group_end(); call group_end() first");
    if (completed_ || ordered_) return;  // done on the device, or the stream already waits
    DeviceGuard guard(comm_->device);
    const cudaStream_t compute = compute_stream(comm_->device);
    if (captured_) {  // the join of the capture; no timing event (nothing may wait for it)
      check_cuda(cudaStreamWaitEvent(compute, done_->get(), 0),
                 comm_->context(what_) + ": cudaStreamWaitEvent (captured)");
      ordered_ = true;
      return;
    }
    auto arrived = std::make_shared<CudaEvent>(/*timing=*/true);
    check_cuda(cudaEventRecord(arrived->get(), compute),
               comm_->context(what_) + ": cudaEventRecord on the compute stream");
    check_cuda(cudaStreamWaitEvent(compute, done_->get(), 0),
               comm_->context(what_) + ": cudaStreamWaitEvent");
    arrived_ = std::move(arrived);
    ordered_ = true;
  }

  bool test() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (completed_ || error_ || captured_) return true;
    return done_ != nullptr && cudaEventQuery(done_->get()) == cudaSuccess;
  }

  std::string description() const override { return what_; }

  // Blocks until the watchdog saw the completion (or failed the work).
  void synchronize() override {
    std::unique_lock<std::mutex> lock(mu_);
    TRIDENT_CHECK(done_ != nullptr || error_, comm_->context(what_),
                  ": issued between group_start() and group_end(); call group_end() first");
    if (captured_) return;  // runs at each launch of the graph, in its stream order
    cv_.wait(lock, [&] { return completed_ || error_ != nullptr; });
    if (error_) std::rethrow_exception(error_);
  }

  double run_seconds() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (start_ == nullptr || !done_on_device()) return -1;
    return elapsed_seconds(start_->get(), done_->get());
  }

  double stall_seconds() override {
    std::shared_ptr<CudaEvent> arrived, done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!done_on_device()) return -1;
      if (arrived_ == nullptr) return 0;  // never waited on, or waited on once complete
      arrived = arrived_;
      done = done_;
    }
    // The compute stream may not have reached the wait yet; it has to before a stall is known
    // (outside the lock: the watchdog takes it).
    if (cudaEventSynchronize(arrived->get()) != cudaSuccess) {
      cudaGetLastError();
      return -1;
    }
    return std::max(0.0, elapsed_seconds(arrived->get(), done->get()));
  }

  // `captured`: issued while the compute stream was capturing a CUDA graph. The operation is a
  // node of the graph (it runs at each launch, ordered by the stream), so the host never waits
  // for it or queries its events (a query of an event recorded in an active capture fails).
  void set_issued(std::shared_ptr<CudaEvent> start, std::shared_ptr<CudaEvent> done,
                  Clock::time_point at, bool captured) {
    std::lock_guard<std::mutex> lock(mu_);
    start_ = std::move(start);
    done_ = std::move(done);
    issued_at_ = at;
    captured_ = captured;
  }
  Clock::time_point issued_at() const {
    std::lock_guard<std::mutex> lock(mu_);
    return issued_at_;
  }
  cudaEvent_t done_event() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_ ? done_->get() : nullptr;
  }
  void finish(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (completed_ || error_) return;
      if (error)
        error_ = std::move(error);
      else
        completed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::shared_ptr<NcclCommState> comm_;
  std::string what_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Completed without error: seen by the watchdog, or its event already done (the watchdog
  // polls; a caller that drained the compute stream need not wait for it). Under mu_.
  bool done_on_device() const {
    if (error_ || captured_) return false;  // captured: not measured (run and stall -1)
    return completed_ || (done_ != nullptr && cudaEventQuery(done_->get()) == cudaSuccess);
  }

  static double elapsed_seconds(cudaEvent_t from, cudaEvent_t to) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, from, to) != cudaSuccess) {
      cudaGetLastError();
      return -1;
    }
    return static_cast<double>(ms) / 1000.0;
  }

  std::shared_ptr<CudaEvent> start_;    // on the communication stream, when the op may begin
  std::shared_ptr<CudaEvent> done_;     // recorded on the communication stream after the op
  std::shared_ptr<CudaEvent> arrived_;  // on the compute stream at the first wait()
  Clock::time_point issued_at_;
  bool completed_ = false;
  bool ordered_ = false;   // the compute stream waits on done_
  bool captured_ = false;  // a node of a CUDA graph being captured (set_issued)
  std::exception_ptr error_;
};

namespace {

// Fails every in-flight work with `error` and marks the communicator unusable with `why`; the
// caller then aborts the NCCL communicator.
void fail_communicator(NcclCommState& s, const std::string& why, std::exception_ptr error) {
  std::deque<std::shared_ptr<NcclWork>> failed;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.failure.empty()) s.failure = why;
    failed.swap(s.in_flight);
  }
  s.cv.notify_all();
  for (auto& w : failed) w->finish(error);
}

void abort_nccl(NcclCommState& s) {
  std::lock_guard<std::mutex> lock(s.issue_mu);
  if (s.comm == nullptr) return;
  DeviceGuard guard(s.device);
  ncclCommAbort(s.comm);
  s.comm = nullptr;
}

// Polls a non-blocking NCCL call that returned `r` until it is no longer in progress. On an
// error or after the timeout the communicator is aborted (the caller holds issue_mu).
void finish_nccl_call(NcclCommState& s, ncclComm_t comm, ncclResult_t r, const std::string& what) {
  const auto deadline = Clock::now() + s.timeout();
  while (r == ncclInProgress) {
    if (s.timeout().count() > 0 && Clock::now() >= deadline) {
      const std::string msg = s.timeout_message(what);
      fail_communicator(s, msg, std::make_exception_ptr(CollectiveTimeout(msg)));
      ncclCommAbort(comm);
      if (comm == s.comm) s.comm = nullptr;
      throw CollectiveTimeout(msg);
    }
    std::this_thread::sleep_for(kPollInterval);
    const ncclResult_t q = ncclCommGetAsyncError(comm, &r);
    if (q != ncclSuccess) r = q;
  }
  if (nccl_failed(r)) {
    const std::string msg = s.nccl_message(what, r);
    if (r != ncclInvalidArgument && r != ncclInvalidUsage) {
      fail_communicator(s, msg, std::make_exception_ptr(Error(msg)));
      ncclCommAbort(comm);
      if (comm == s.comm) s.comm = nullptr;
    }
    throw Error(msg);
  }
}

// Called with `mu` held. A failed communicator is unusable at once: the watchdog fails the
// works (waking their waiters) before it takes issue_mu to abort, so `comm` may still be set.
void check_usable(const NcclCommState& s, const std::string& what) {
  TRIDENT_CHECK(s.comm != nullptr && s.failure.empty(), s.context(what),
                ": the NCCL communicator was aborted (",
                s.failure.empty() ? std::string("destroyed") : s.failure, ")");
}

void launch_locked(NcclCommState& s, std::vector<GroupedOp>& ops);

// Issues `ops` as one NCCL group on the communication stream, after the compute stream's
// queued work, and hands their works to the watchdog. When that fails, their works fail too
// (the caller also gets the exception).
void launch(NcclCommState& s, std::vector<GroupedOp>& ops) {
  try {
    std::lock_guard<std::mutex> lock(s.issue_mu);
    launch_locked(s, ops);
  } catch (...) {
    for (GroupedOp& op : ops) op.work->finish(std::current_exception());
    throw;
  }
}

void launch_locked(NcclCommState& s, std::vector<GroupedOp>& ops) {
  const std::string what = ops.size() == 1 ? ops.front().work->description()
                                           : str_cat("group of ", ops.size(), " operations");
  {
    std::lock_guard<std::mutex> state_lock(s.mu);
    check_usable(s, what);
  }
  DeviceGuard guard(s.device);
  const cudaStream_t stream = s.stream->get();
  // Under a capture of the compute stream the events below fork the communication stream into
  // the capture and wait() joins it back: the collective becomes a node of the graph.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(compute_stream(s.device), &capture),
             s.context(what) + ": cudaStreamIsCapturing");
  const bool captured = capture == cudaStreamCaptureStatusActive;
  check_cuda(cudaEventRecord(s.ready->get(), compute_stream(s.device)),
             s.context(what) + ": cudaEventRecord on the compute stream");
  check_cuda(cudaStreamWaitEvent(stream, s.ready->get(), 0),
             s.context(what) + ": cudaStreamWaitEvent");
  // The buffers are in use on this stream: the caching allocator must not hand them out again
  // until the collective is done, even when they are freed as soon as wait() returns.
  Allocator& allocator = allocator_for(Device::cuda(s.device));
  for (const GroupedOp& op : ops) {
    for (const void* p : op.buffers) allocator.record_stream(p, stream);
  }
  auto start = std::make_shared<CudaEvent>(/*timing=*/true);
  check_cuda(cudaEventRecord(start->get(), stream), s.context(what) + ": cudaEventRecord");
  ncclResult_t r = ncclGroupStart();
  ncclResult_t first_error = ncclSuccess;
  for (GroupedOp& op : ops) {
    const ncclResult_t e = op.issue(s.comm, stream);
    if (nccl_failed(e) && first_error == ncclSuccess) first_error = e;
  }
  r = ncclGroupEnd();
  if (first_error != ncclSuccess && !nccl_failed(r)) r = first_error;
  finish_nccl_call(s, s.comm, r, what);
  auto done = std::make_shared<CudaEvent>(/*timing=*/true);
  check_cuda(cudaEventRecord(done->get(), stream), s.context(what) + ": cudaEventRecord");
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> state_lock(s.mu);
    for (GroupedOp& op : ops) {
      op.work->set_issued(start, done, now, captured);
      if (!captured) s.in_flight.push_back(op.work);  // the watchdog polls eager work only
    }
  }
  s.cv.notify_all();
}

void run_watchdog(const std::shared_ptr<NcclCommState>& state) {
  NcclCommState& s = *state;
  cudaSetDevice(s.device);
  std::unique_lock<std::mutex> lock(s.mu);
  for (;;) {
    s.cv.wait(lock, [&] { return s.stopping || !s.in_flight.empty(); });
    if (s.in_flight.empty()) break;  // stopping
    // Completions, oldest first (the stream runs them in order).
    while (!s.in_flight.empty()) {
      const std::shared_ptr<NcclWork> w = s.in_flight.front();
      const cudaError_t q = cudaEventQuery(w->done_event());
      if (q == cudaErrorNotReady) break;
      s.in_flight.pop_front();
      s.last_progress = Clock::now();
      if (q == cudaSuccess) {
        w->finish(nullptr);
      } else {
        cudaGetLastError();
        w->finish(std::make_exception_ptr(Error(
            str_cat(s.context(w->description()), " failed: CUDA error: ", cudaGetErrorString(q)))));
      }
    }
    s.cv.notify_all();
    if (s.in_flight.empty()) continue;
    const std::shared_ptr<NcclWork> oldest = s.in_flight.front();
    const std::string what = oldest->description();
    // An asynchronous NCCL error (a peer died, a network failure).
    ncclResult_t async = ncclSuccess;
    {
      std::unique_lock<std::mutex> issue(s.issue_mu, std::try_to_lock);
      if (issue.owns_lock() && s.comm != nullptr) ncclCommGetAsyncError(s.comm, &async);
    }
    if (nccl_failed(async)) {
      const std::string msg = s.nccl_message(what, async);
      lock.unlock();
      fail_communicator(s, msg, std::make_exception_ptr(Error(msg)));
      abort_nccl(s);
      lock.lock();
      continue;
    }
    const auto timeout = s.timeout();
    const auto deadline = std::max(oldest->issued_at(), s.last_progress) + timeout;
    if (timeout.count() > 0 && Clock::now() >= deadline) {
      const std::string msg = s.timeout_message(what);
      lock.unlock();
      // Ending the job releases the GPU; ncclCommAbort first could block on the stuck stream.
      if (s.abort_job_on_timeout) abort_job(msg, 1);
      fail_communicator(s, msg, std::make_exception_ptr(CollectiveTimeout(msg)));
      abort_nccl(s);
      lock.lock();
      continue;
    }
    s.cv.wait_for(lock, kPollInterval);
  }
}

std::unique_ptr<CudaEvent> make_event() {
  return std::make_unique<CudaEvent>();
}

void check_reduction(const NcclCommState& s, const std::string& what, DType dtype, ReduceOp op) {
  TRIDENT_CHECK(op != ReduceOp::Avg || dtype_is_floating(dtype), s.context(what),
                ": avg of integers is not supported; reduce with sum and divide");
}

void check_peer(const NcclCommState& s, const std::string& what, int peer, const char* role) {
  TRIDENT_CHECK(peer >= 0 && peer < s.size, s.context(what), ": ", role, " ", peer,
                " is not a rank of this communicator");
}

// Device or host: all buffers of one call must agree.
bool on_device(const NcclCommState& s, const std::string& what,
               std::initializer_list<const void*> buffers) {
  int device = 0, host = 0;
  for (const void* p : buffers) {
    if (p == nullptr) continue;
    (is_device_pointer(p) ? device : host) += 1;
  }
  TRIDENT_CHECK(device == 0 || host == 0, s.context(what),
                ": some buffers are device memory and some host memory; pass one kind");
  return device > 0;
}

}  // namespace

std::shared_ptr<NcclCommState> make_state(ncclComm_t comm, int device, MpiCommunicator& host) {
  auto s = std::make_shared<NcclCommState>();
  s->comm = comm;
  s->device = device;
  s->host = &host;
  s->name = host.name();
  s->world_rank = rank_for_messages();
  ncclCommUserRank(comm, &s->rank);
  ncclCommCount(comm, &s->size);
  s->timeout_ms = host.timeout().count();
  DeviceGuard guard(device);
  s->stream = std::make_unique<CudaStream>();
  s->ready = make_event();
  s->scratch = std::make_unique<DeviceBuffer>(sizeof(int32_t));
  TRIDENT_CHECK(s->rank == host.rank() && s->size == host.size(), s->context("creation"),
                ": the NCCL communicator has rank ", s->rank, " of ", s->size,
                " but its MPI communicator rank ", host.rank(), " of ", host.size());
  s->watchdog = std::thread(run_watchdog, s);
  return s;
}

// Waits for a non-blocking init or split (from the caller's thread), polling `comm`: the new
// communicator, which is aborted on failure, or (`is_new` false: a split this rank takes no
// part in) the parent, which is left to its owner.
void finish_comm_creation(const std::string& context, ncclComm_t comm, ncclResult_t r,
                          std::chrono::milliseconds timeout, bool is_new = true) {
  const auto deadline = Clock::now() + timeout;
  while (r == ncclInProgress && comm != nullptr) {
    if (timeout.count() > 0 && Clock::now() >= deadline) {
      if (is_new) ncclCommAbort(comm);
      throw CollectiveTimeout(str_cat(context, " did not finish within ",
                                      static_cast<double>(timeout.count()) / 1000.0,
                                      " s: a peer rank may have died, hung or skipped this call"));
    }
    std::this_thread::sleep_for(kPollInterval);
    const ncclResult_t q = ncclCommGetAsyncError(comm, &r);
    if (q != ncclSuccess) r = q;
  }
  if (nccl_failed(r)) {
    std::string msg = str_cat(context, " failed: NCCL error ", static_cast<int>(r), " (",
                              ncclGetErrorString(r), ")");
    const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
    if (last != nullptr && last[0] != '\0') msg += str_cat(": ", last);
    if (comm != nullptr && is_new) ncclCommAbort(comm);
    throw Error(msg);
  }
}

}  // namespace detail

using detail::NcclCommState;

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::U8:
      return ncclUint8;
  }
  throw Error("unknown dtype");
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(MpiCommunicator& host, int device) {
  const std::string context =
      str_cat("rank ", rank_for_messages(), ": NCCL initialisation of '", host.name(), "' (rank ",
              host.rank(), " of ", host.size(), ") on cuda:", device);
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  TRIDENT_CHECK(rc == cudaSuccess && device >= 0 && device < devices, context,
                ": no such CUDA device (", rc == cudaSuccess ? devices : 0, " visible",
                rc == cudaSuccess ? std::string() : str_cat(", ", cudaGetErrorString(rc)), ")");
  ncclUniqueId id{};
  std::string error;
  if (host.rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      error = str_cat(context, ": ncclGetUniqueId failed: ", ncclGetErrorString(r));
  }
  // Rank 0's failure must reach every rank, or they would wait for it in the init.
  int32_t failed = error.empty() ? 0 : 1;
  host.all_reduce(&failed, 1, DType::I32, ReduceOp::Max);
  TRIDENT_CHECK(failed == 0,
                error.empty() ? context + ": rank 0 could not create the NCCL id" : error);
  host.broadcast(&id, sizeof id, DType::U8, 0);

  detail::DeviceGuard guard(device);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, host.size(), id, host.rank(), &config);
  detail::finish_comm_creation(context, comm, r, host.timeout());
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(detail::make_state(comm, device, host)));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclCommState> state)
    : state_(std::move(state)) {}

NcclCommunicator::~NcclCommunicator() {
  NcclCommState& s = *state_;
  const bool ending = std::uncaught_exceptions() > 0;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    // Let the queued collectives finish; the watchdog enforces the timeout meanwhile.
    if (!ending) s.cv.wait(lock, [&] { return s.in_flight.empty(); });
    s.stopping = true;
  }
  if (ending)
    detail::fail_communicator(
        s, "destroyed while an exception unwound the stack",
        std::make_exception_ptr(
            Error(s.context("an operation") + ": cancelled, the communicator was destroyed")));
  s.cv.notify_all();
  s.watchdog.join();
  std::lock_guard<std::mutex> issue(s.issue_mu);
  if (s.comm == nullptr) return;
  detail::DeviceGuard guard(s.device);
  if (ending) {
    ncclCommAbort(s.comm);
  } else {
    ncclResult_t r = ncclCommFinalize(s.comm);
    const auto deadline = detail::Clock::now() + s.timeout();
    while (r == ncclInProgress) {
      if (s.timeout().count() > 0 && detail::Clock::now() >= deadline) {
        abort_job(s.timeout_message("finalizing the communicator"), 1);
      }
      std::this_thread::sleep_for(detail::kPollInterval);
      const ncclResult_t q = ncclCommGetAsyncError(s.comm, &r);
      if (q != ncclSuccess) r = q;
    }
    if (r == ncclSuccess)
      ncclCommDestroy(s.comm);
    else
      ncclCommAbort(s.comm);
  }
  s.comm = nullptr;
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::split(int color, int key,
                                                          MpiCommunicator* host) {
  NcclCommState& s = *state_;
  const std::string what = str_cat("split (color ", color, ", key ", key, ")");
  TRIDENT_CHECK(color < 0 || host != nullptr, s.context(what),
                ": a member of the new group needs its MPI communicator");
  ncclComm_t out = nullptr;
  {
    std::lock_guard<std::mutex> issue(s.issue_mu);
    TRIDENT_CHECK(!s.grouping, s.context(what),
                  ": not allowed between group_start() and group_end()");
    {
      std::lock_guard<std::mutex> state_lock(s.mu);
      detail::check_usable(s, what);
    }
    detail::DeviceGuard guard(s.device);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r =
        ncclCommSplit(s.comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &out, &config);
    detail::finish_comm_creation(s.context(what), out != nullptr ? out : s.comm, r, s.timeout(),
                                 out != nullptr);
  }
  if (color < 0) return nullptr;
  TRIDENT_CHECK(out != nullptr, s.context(what), ": ncclCommSplit returned no communicator");
  auto child = std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(detail::make_state(out, s.device, *host)));
  child->set_timeout(timeout());
  child->set_abort_job_on_timeout(s.abort_job_on_timeout);
  return child;
}

int NcclCommunicator::device() const {
  return state_->device;
}
cudaStream_t NcclCommunicator::stream() const {
  return state_->stream->get();
}
ncclComm_t NcclCommunicator::handle() const {
  return state_->comm;
}
MpiCommunicator& NcclCommunicator::host() const {
  return *state_->host;
}
int NcclCommunicator::rank() const {
  return state_->rank;
}
int NcclCommunicator::size() const {
  return state_->size;
}
const std::string& NcclCommunicator::name() const {
  return state_->name;
}
void NcclCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  TRIDENT_CHECK(timeout.count() >= 0, "communicator '", state_->name,
                "': the timeout must not be negative");
  state_->timeout_ms = timeout.count();
}
std::chrono::milliseconds NcclCommunicator::timeout() const {
  return state_->timeout();
}
void NcclCommunicator::set_abort_job_on_timeout(bool abort_job) {
  state_->abort_job_on_timeout = abort_job;
}

void NcclCommunicator::group_start() {
  std::lock_guard<std::mutex> issue(state_->issue_mu);
  TRIDENT_CHECK(!state_->grouping, state_->context("group_start()"),
                ": already inside group_start(); groups do not nest");
  state_->grouping = true;
}

void NcclCommunicator::group_end() {
  std::vector<detail::GroupedOp> ops;
  {
    std::lock_guard<std::mutex> issue(state_->issue_mu);
    TRIDENT_CHECK(state_->grouping, state_->context("group_end()"), ": no group_start() before it");
    state_->grouping = false;
    ops.swap(state_->group);
  }
  if (!ops.empty()) detail::launch(*state_, ops);
}

namespace {

std::shared_ptr<Work> issue(const std::shared_ptr<NcclCommState>& state, std::string what,
                            std::vector<const void*> buffers, detail::IssueFn fn) {
  auto work = std::make_shared<detail::NcclWork>(state, std::move(what));
  std::vector<detail::GroupedOp> ops{{work, std::move(fn), std::move(buffers)}};
  {
    std::lock_guard<std::mutex> lock(state->issue_mu);
    if (state->grouping) {
      state->group.push_back(std::move(ops.front()));
      return work;
    }
  }
  detail::launch(*state, ops);
  return work;
}

}  // namespace

std::shared_ptr<Work> NcclCommunicator::all_reduce_async(void* data, size_t count, DType dtype,
                                                         ReduceOp op) {
  const NcclCommState& s = *state_;
  std::string what =
      str_cat("all_reduce of ", detail::elements(count, dtype), " (", reduce_op_name(op), ")");
  detail::check_reduction(s, what, dtype, op);
  if (!detail::on_device(s, what, {data})) return s.host->all_reduce_async(data, count, dtype, op);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {data}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(data, data, count, t, detail::nccl_op(op), comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                             size_t recv_count, DType dtype,
                                                             ReduceOp op) {
  const NcclCommState& s = *state_;
  std::string what = str_cat("reduce_scatter of ", detail::elements(recv_count, dtype),
                             " per rank (", reduce_op_name(op), ")");
  detail::check_reduction(s, what, dtype, op);
  if (!detail::on_device(s, what, {send, recv}))
    return s.host->reduce_scatter_async(send, recv, recv_count, dtype, op);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {send, recv}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(send, recv, recv_count, t, detail::nccl_op(op), comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::all_gather_async(const void* send, void* recv,
                                                         size_t send_count, DType dtype) {
  const NcclCommState& s = *state_;
  std::string what = str_cat("all_gather of ", detail::elements(send_count, dtype), " per rank");
  if (!detail::on_device(s, what, {send, recv}))
    return s.host->all_gather_async(send, recv, send_count, dtype);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {send, recv}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(send, recv, send_count, t, comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::broadcast_async(void* data, size_t count, DType dtype,
                                                        int root) {
  const NcclCommState& s = *state_;
  std::string what = str_cat("broadcast of ", detail::elements(count, dtype), " from rank ", root);
  detail::check_peer(s, what, root, "root");
  if (!detail::on_device(s, what, {data})) return s.host->broadcast_async(data, count, dtype, root);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {data}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(data, data, count, t, root, comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::send_async(const void* data, size_t count, DType dtype,
                                                   int dst, int tag) {
  const NcclCommState& s = *state_;
  std::string what =
      str_cat("send of ", detail::elements(count, dtype), " to rank ", dst, " (tag ", tag, ")");
  detail::check_peer(s, what, dst, "destination");
  TRIDENT_CHECK(tag >= 0, s.context(what), ": tag must not be negative");
  if (!detail::on_device(s, what, {data})) return s.host->send_async(data, count, dtype, dst, tag);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {data}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclSend(data, count, t, dst, comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::recv_async(void* data, size_t count, DType dtype, int src,
                                                   int tag) {
  const NcclCommState& s = *state_;
  std::string what =
      str_cat("recv of ", detail::elements(count, dtype), " from rank ", src, " (tag ", tag, ")");
  detail::check_peer(s, what, src, "source");
  TRIDENT_CHECK(tag >= 0, s.context(what), ": tag must not be negative");
  if (!detail::on_device(s, what, {data})) return s.host->recv_async(data, count, dtype, src, tag);
  const ncclDataType_t t = nccl_type(dtype);
  return issue(state_, std::move(what), {data}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclRecv(data, count, t, src, comm, stream);
  });
}

std::shared_ptr<Work> NcclCommunicator::barrier_async() {
  void* scratch = state_->scratch->get();
  return issue(state_, "barrier", {}, [=](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(scratch, scratch, 1, ncclInt32, ncclSum, comm, stream);
  });
}

void NcclCommunicator::synchronize(const std::shared_ptr<Work>& work) {
  TRIDENT_CHECK(work != nullptr, "NcclCommunicator::synchronize: no work given");
  work->synchronize();
}

}  // namespace trident
#endif  // TRIDENT_WITH_NCCL
