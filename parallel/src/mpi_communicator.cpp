#include "trident/parallel/mpi_communicator.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

#include "device_staging.hpp"
#include "half_float.hpp"
#include "trident/parallel/mpi_runtime.hpp"
#include "trident/trace/trace.hpp"

namespace trident {
namespace detail {

using Clock = std::chrono::steady_clock;
// How often the thread tests posted send/recv requests while its queue is empty.
constexpr std::chrono::microseconds kPollInterval{50};

class QueuedWork;

// One operation. start() runs on the communication thread: a collective runs to completion
// and returns MPI_REQUEST_NULL; send/recv return their request, tested until complete, and
// on_complete then checks the status.
struct Task {
  std::shared_ptr<QueuedWork> work;
  std::function<MPI_Request()> start;
  std::function<void(const MPI_Status&)> on_complete;
  MPI_Request request = MPI_REQUEST_NULL;
  // Timeline trace: the operation ("all_reduce", "send"), its bytes, for send/recv the peer
  // (-1 for collectives), and when the thread started it (0 when not tracing).
  const char* trace_op = "mpi";
  int64_t trace_bytes = 0;
  int trace_peer = -1;
  int64_t started_ns = 0;
};

struct MpiCommState {
  MPI_Comm comm = MPI_COMM_NULL;
  std::string name;
  int rank = 0, size = 1, world_rank = 0, tag_ub = 32767;
  int group_root = 0;       // world rank of this communicator's rank 0 (names the group in traces)
  int64_t collectives = 0;  // collectives started so far, on the thread (their index in traces)
  std::atomic<int64_t> timeout_ms{300000};
  std::atomic<int64_t> last_progress_ns{0};  // when the thread last finished an operation
  std::atomic<bool> timed_out{false};

  std::mutex mu;                      // guards the fields below
  std::condition_variable cv;         // queue not empty, or stopping
  std::condition_variable exited_cv;  // the thread returned
  std::deque<Task> queue;
  bool stopping = false;
  bool exited = false;
  std::string in_flight;  // the oldest operation the thread holds, for messages

  std::string context(const std::string& what) const {
    return str_cat("rank ", world_rank, ": ", what, " on communicator '", name, "' (rank ", rank,
                   " of ", size, ")");
  }
  void touch() {
    last_progress_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count();
  }
  Clock::time_point last_progress() const {
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
        std::chrono::nanoseconds(last_progress_ns.load())));
  }
  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms.load()); }
  std::string timeout_message(const std::string& what) const {
    return str_cat(context(what), " did not finish within ",
                   static_cast<double>(timeout_ms.load()) / 1000.0,
                   " s: a peer rank may have died, hung or skipped this call");
  }
};

class QueuedWork final : public Work {
 public:
  QueuedWork(std::shared_ptr<MpiCommState> comm, std::string what)
      : comm_(std::move(comm)), what_(std::move(what)) {}

  // Gives up when neither this operation nor any before it finished within the timeout,
  // counted from the call to wait() or the thread's last progress, whichever is later.
  void wait() override {
    std::unique_lock<std::mutex> lock(mu_);
    const auto called = Clock::now();
    while (!done_) {
      const auto timeout = comm_->timeout();
      if (timeout.count() == 0) {
        cv_.wait(lock, [&] { return done_; });
        break;
      }
      const auto deadline = std::max(called, comm_->last_progress()) + timeout;
      if (Clock::now() >= deadline) {
        comm_->timed_out = true;
        throw CollectiveTimeout(comm_->timeout_message(what_));
      }
      cv_.wait_until(lock, deadline, [&] { return done_; });
    }
    if (error_) std::rethrow_exception(error_);
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  std::string description() const override { return what_; }

  void finish(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      error_ = std::move(error);
    }
    cv_.notify_all();
  }

 private:
  std::shared_ptr<MpiCommState> comm_;
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

namespace {

void check_mpi(int rc) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(text, static_cast<size_t>(len)));
}

std::exception_ptr wrap_failure(const MpiCommState& s, const std::string& what,
                                const std::exception& e) {
  return std::make_exception_ptr(Error(str_cat(s.context(what), " failed: ", e.what())));
}

// A finished operation's span on this thread's track, e.g. "all_reduce dp" with its bytes;
// collectives carry their index on the communicator and the group, which trident-report uses
// to line up the same collective across ranks (its last arrival is the straggler).
void trace_finished(MpiCommState& s, const Task& task) {
  if (task.started_ns == 0 || !trace::enabled()) return;
  std::string name = str_cat(task.trace_op, " ", s.name);
  if (task.trace_peer < 0) {
    trace::record(
        std::move(name), trace::Category::Comm, task.started_ns, trace::now_ns(),
        {{"bytes", task.trace_bytes}, {"seq", s.collectives - 1}, {"group", s.group_root}});
  } else {
    trace::record(std::move(name), trace::Category::Comm, task.started_ns, trace::now_ns(),
                  {{"bytes", task.trace_bytes}, {"peer", task.trace_peer}});
  }
}

void start_task(MpiCommState& s, Task& task, std::vector<Task>& pending) {
  if (task.trace_peer < 0) ++s.collectives;
  if (trace::enabled()) task.started_ns = trace::now_ns();
  try {
    task.request = task.start();
    if (task.request != MPI_REQUEST_NULL) {
      pending.push_back(std::move(task));
      return;
    }
    trace_finished(s, task);
    task.work->finish(nullptr);
  } catch (const std::exception& e) {
    task.work->finish(wrap_failure(s, task.work->description(), e));
  }
  s.touch();
}

void poll_pending(MpiCommState& s, std::vector<Task>& pending) {
  for (auto it = pending.begin(); it != pending.end();) {
    int flag = 0;
    MPI_Status status;
    const int rc = MPI_Test(&it->request, &flag, &status);
    if (rc == MPI_SUCCESS && !flag) {
      ++it;
      continue;
    }
    std::exception_ptr error;
    try {
      check_mpi(rc);
      if (it->on_complete) it->on_complete(status);
      trace_finished(s, *it);
    } catch (const std::exception& e) {
      error = wrap_failure(s, it->work->description(), e);
    }
    it->work->finish(error);
    s.touch();
    it = pending.erase(it);
  }
}

void run_thread(std::shared_ptr<MpiCommState> state) {
  MpiCommState& s = *state;
  trace::set_thread_name("comm " + s.name);
  std::vector<Task> pending;  // posted send/recv, oldest first
  for (;;) {
    Task task;
    bool have_task = false;
    {
      std::unique_lock<std::mutex> lock(s.mu);
      if (pending.empty())
        s.cv.wait(lock, [&] { return !s.queue.empty() || s.stopping; });
      else
        s.cv.wait_for(lock, kPollInterval, [&] { return !s.queue.empty(); });
      if (!s.queue.empty()) {
        task = std::move(s.queue.front());
        s.queue.pop_front();
        have_task = true;
        if (pending.empty()) s.in_flight = task.work->description();
      } else if (s.stopping && pending.empty()) {
        break;
      }
    }
    if (have_task) start_task(s, task, pending);
    if (!pending.empty()) poll_pending(s, pending);
    if (!pending.empty()) {
      std::lock_guard<std::mutex> lock(s.mu);
      s.in_flight = pending.front().work->description();
    }
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.exited = true;
  }
  s.exited_cv.notify_all();
}

// `op`, `bytes` and `peer` (-1: a collective) label the operation in traces.
std::shared_ptr<Work> enqueue(const std::shared_ptr<MpiCommState>& state, std::string what,
                              std::function<MPI_Request()> start,
                              std::function<void(const MPI_Status&)> on_complete = {},
                              const char* op = "mpi", size_t bytes = 0, int peer = -1) {
  auto work = std::make_shared<QueuedWork>(state, std::move(what));
  {
    std::lock_guard<std::mutex> lock(state->mu);
    TRIDENT_CHECK(!state->stopping, state->context(work->description()),
                  ": the communicator is being destroyed");
    state->queue.push_back(Task{work, std::move(start), std::move(on_complete)});
    Task& task = state->queue.back();
    task.trace_op = op;
    task.trace_bytes = static_cast<int64_t>(bytes);
    task.trace_peer = peer;
  }
  state->cv.notify_one();
  return work;
}

// A collective: runs to completion on the thread.
std::shared_ptr<Work> enqueue_collective(const std::shared_ptr<MpiCommState>& state,
                                         std::string what, std::function<void()> run,
                                         const char* op = "collective", size_t bytes = 0) {
  return enqueue(
      state, std::move(what),
      [run = std::move(run)] {
        run();
        return MPI_REQUEST_NULL;
      },
      {}, op, bytes);
}

bool is_half(DType t) {
  return t == DType::BF16 || t == DType::F16;
}

// The MPI type that moves `t` (bf16/f16 move bitwise as 16-bit integers).
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::BF16:
      return MPI_UINT16_T;
    case DType::F16:
      return MPI_UINT16_T;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    case DType::U8:
      return MPI_UINT8_T;
  }
  throw Error("unknown dtype");
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return MPI_SUM;
    case ReduceOp::Max:
      return MPI_MAX;
    case ReduceOp::Min:
      return MPI_MIN;
    case ReduceOp::Avg:
      return MPI_SUM;  // then divided by the size
  }
  throw Error("unknown reduce op");
}

int checked_count(const MpiCommState& s, const std::string& what, size_t count) {
  TRIDENT_CHECK(count <= static_cast<size_t>(INT_MAX), s.context(what), ": ", count,
                " elements exceed INT_MAX, the most one MPI call can move: split the buffer");
  return static_cast<int>(count);
}

void check_reduction(const MpiCommState& s, const std::string& what, DType dtype, ReduceOp op) {
  TRIDENT_CHECK(op != ReduceOp::Avg || dtype_is_floating(dtype), s.context(what),
                ": avg of integers is not supported; reduce with sum and divide");
}

void check_peer(const MpiCommState& s, const std::string& what, int peer, const char* role) {
  TRIDENT_CHECK(peer >= 0 && peer < s.size, s.context(what), ": ", role, " ", peer,
                " is not a rank of this communicator");
}

// Avg: the sum divided by the number of ranks, for floating types (bf16/f16 are staged f32).
void divide_for_avg(void* data, size_t count, DType dtype, ReduceOp op, int size) {
  if (op != ReduceOp::Avg) return;
  if (dtype == DType::F32) {
    float* d = static_cast<float*>(data);
    for (size_t i = 0; i < count; ++i) d[i] /= static_cast<float>(size);
  } else if (dtype == DType::F64) {
    double* d = static_cast<double*>(data);
    for (size_t i = 0; i < count; ++i) d[i] /= static_cast<double>(size);
  }
}

std::string elements(size_t count, DType dtype) {
  return str_cat(count, " ", dtype_name(dtype));
}

}  // namespace
}  // namespace detail

using detail::make_device_staging;
using detail::MpiCommState;
using detail::StageDir;
using detail::Task;

std::unique_ptr<MpiCommunicator> MpiCommunicator::world(const std::string& name) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  TRIDENT_CHECK(initialized, "MPI is not initialised: create a trident::MpiRuntime before the '",
                name, "' communicator");
  MPI_Comm comm = MPI_COMM_NULL;
  detail::check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  return std::make_unique<MpiCommunicator>(comm, name);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name)
    : state_(std::make_shared<MpiCommState>()) {
  TRIDENT_CHECK(comm != MPI_COMM_NULL, "communicator '", name, "' was given MPI_COMM_NULL");
  MpiCommState& s = *state_;
  s.comm = comm;
  s.name = std::move(name);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm, &s.rank);
  MPI_Comm_size(comm, &s.size);
  MPI_Comm_rank(MPI_COMM_WORLD, &s.world_rank);
  {
    MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
    const int zero = 0;
    MPI_Comm_group(comm, &group);
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Group_translate_ranks(group, 1, &zero, world_group, &s.group_root);
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
  }
  void* tag_ub = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_ub, &found);
  if (found && tag_ub) s.tag_ub = *static_cast<int*>(tag_ub);
  s.touch();
  thread_ = std::thread(detail::run_thread, state_);
}

MpiCommunicator::~MpiCommunicator() {
  MpiCommState& s = *state_;
  std::unique_lock<std::mutex> lock(s.mu);
  s.stopping = true;
  s.cv.notify_all();
  // Destroyed by an exception, or after a timeout: the job is ending (run_guarded aborts it
  // with the original message), so do not wait for peers that may never come. Operations not
  // started yet are cancelled; one already inside MPI is left to the detached thread.
  const bool ending = std::uncaught_exceptions() > 0 || s.timed_out;
  if (ending) {
    std::deque<Task> cancelled;
    cancelled.swap(s.queue);
    for (Task& task : cancelled)
      task.work->finish(std::make_exception_ptr(Error(str_cat(
          s.context(task.work->description()), ": cancelled, the communicator was destroyed"))));
    s.exited_cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return s.exited; });
  }
  // Otherwise let queued operations finish, under the same timeout as Work::wait.
  const auto called = detail::Clock::now();
  while (!ending && !s.exited) {
    const auto timeout = s.timeout();
    if (timeout.count() == 0) {
      s.exited_cv.wait(lock, [&] { return s.exited; });
      break;
    }
    const auto deadline = std::max(called, s.last_progress()) + timeout;
    if (detail::Clock::now() >= deadline) {
      const std::string stuck = s.in_flight;
      lock.unlock();
      abort_job(str_cat(s.timeout_message(stuck), " (while destroying the communicator)"), 1);
    }
    s.exited_cv.wait_until(lock, deadline, [&] { return s.exited; });
  }
  const bool exited = s.exited;
  lock.unlock();
  if (!exited) {
    thread_.detach();  // stuck inside MPI; the communicator is leaked as the job ends
    return;
  }
  thread_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&s.comm);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key,
                                                        const std::string& name) {
  const std::string what = str_cat("split into '", name, "' (color ", color, ", key ", key, ")");
  TRIDENT_CHECK(color >= 0, state_->context(what), ": color must be >= 0");
  auto out = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  const MPI_Comm comm = state_->comm;
  finish_blocking(detail::enqueue_collective(
      state_, what, [=] { detail::check_mpi(MPI_Comm_split(comm, color, key, out.get())); }));
  return std::make_unique<MpiCommunicator>(*out, name);
}

MPI_Comm MpiCommunicator::handle() const {
  return state_->comm;
}
int MpiCommunicator::rank() const {
  return state_->rank;
}
int MpiCommunicator::size() const {
  return state_->size;
}
const std::string& MpiCommunicator::name() const {
  return state_->name;
}

void MpiCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  TRIDENT_CHECK(timeout.count() >= 0, "communicator '", state_->name,
                "': the timeout must not be negative");
  state_->timeout_ms = timeout.count();
}
std::chrono::milliseconds MpiCommunicator::timeout() const {
  return state_->timeout();
}

std::shared_ptr<Work> MpiCommunicator::all_reduce_async(void* data, size_t count, DType dtype,
                                                        ReduceOp op) {
  using namespace detail;
  std::string what =
      str_cat("all_reduce of ", elements(count, dtype), " (", reduce_op_name(op), ")");
  const int n = checked_count(*state_, what, count);
  check_reduction(*state_, what, dtype, op);
  const MPI_Comm comm = state_->comm;
  const int size = state_->size;
  // Device buffers go through pinned host memory (device_staging.hpp); null for host buffers.
  const auto dev = make_device_staging({{data, count * dtype_size(dtype), StageDir::InOut}});
  return enqueue_collective(
      state_, std::move(what),
      [=] {
        if (n == 0) return;
        if (dev) dev->copy_in();
        void* const buf = dev ? dev->host(0) : data;
        if (is_half(dtype)) {
          std::vector<float> staged(count);
          half_float::to_f32(buf, staged.data(), count, dtype == DType::BF16);
          check_mpi(MPI_Allreduce(MPI_IN_PLACE, staged.data(), n, MPI_FLOAT, mpi_op(op), comm));
          divide_for_avg(staged.data(), count, DType::F32, op, size);
          half_float::from_f32(staged.data(), buf, count, dtype == DType::BF16);
        } else {
          check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf, n, mpi_type(dtype), mpi_op(op), comm));
          divide_for_avg(buf, count, dtype, op, size);
        }
        if (dev) dev->copy_out();
      },
      "all_reduce", count * dtype_size(dtype));
}

std::shared_ptr<Work> MpiCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                            size_t recv_count, DType dtype,
                                                            ReduceOp op) {
  using namespace detail;
  std::string what = str_cat("reduce_scatter of ", elements(recv_count, dtype), " per rank (",
                             reduce_op_name(op), ")");
  const int size = state_->size;
  const size_t total = recv_count * static_cast<size_t>(size);
  checked_count(*state_, what, total);  // Open MPI sums the blocks in an int
  const int n = checked_count(*state_, what, recv_count);
  check_reduction(*state_, what, dtype, op);
  const MPI_Comm comm = state_->comm;
  const auto dev = make_device_staging({{send, total * dtype_size(dtype), StageDir::In},
                                        {recv, recv_count * dtype_size(dtype), StageDir::Out}});
  return enqueue_collective(
      state_, std::move(what),
      [=] {
        if (n == 0) return;
        if (dev) dev->copy_in();
        const void* const in_buf = dev ? dev->host(0) : send;
        void* const out_buf = dev ? dev->host(1) : recv;
        if (is_half(dtype)) {
          const bool bf16 = dtype == DType::BF16;
          std::vector<float> in(total), out(recv_count);
          half_float::to_f32(in_buf, in.data(), total, bf16);
          check_mpi(
              MPI_Reduce_scatter_block(in.data(), out.data(), n, MPI_FLOAT, mpi_op(op), comm));
          divide_for_avg(out.data(), recv_count, DType::F32, op, size);
          half_float::from_f32(out.data(), out_buf, recv_count, bf16);
        } else {
          check_mpi(
              MPI_Reduce_scatter_block(in_buf, out_buf, n, mpi_type(dtype), mpi_op(op), comm));
          divide_for_avg(out_buf, recv_count, dtype, op, size);
        }
        if (dev) dev->copy_out();
      },
      "reduce_scatter", total * dtype_size(dtype));
}

std::shared_ptr<Work> MpiCommunicator::all_gather_async(const void* send, void* recv,
                                                        size_t send_count, DType dtype) {
  using namespace detail;
  std::string what = str_cat("all_gather of ", elements(send_count, dtype), " per rank");
  checked_count(*state_, what, send_count * static_cast<size_t>(state_->size));
  const int n = checked_count(*state_, what, send_count);
  const MPI_Comm comm = state_->comm;
  const char* own_block = static_cast<const char*>(recv) +
                          send_count * dtype_size(dtype) * static_cast<size_t>(state_->rank);
  const void* source = send == own_block ? MPI_IN_PLACE : send;
  // In place, the own block is staged in with the rest of recv.
  const size_t block_bytes = send_count * dtype_size(dtype);
  const auto dev =
      make_device_staging({{source == MPI_IN_PLACE ? nullptr : send, block_bytes, StageDir::In},
                           {recv, block_bytes * static_cast<size_t>(state_->size),
                            source == MPI_IN_PLACE ? StageDir::InOut : StageDir::Out}});
  return enqueue_collective(
      state_, std::move(what),
      [=] {
        if (n == 0) return;
        if (dev) dev->copy_in();
        const void* const in_buf = dev && source != MPI_IN_PLACE ? dev->host(0) : source;
        void* const out_buf = dev ? dev->host(1) : recv;
        const MPI_Datatype type = mpi_type(dtype);
        check_mpi(MPI_Allgather(in_buf, n, type, out_buf, n, type, comm));
        if (dev) dev->copy_out();
      },
      "all_gather", send_count * dtype_size(dtype) * static_cast<size_t>(state_->size));
}

std::shared_ptr<Work> MpiCommunicator::broadcast_async(void* data, size_t count, DType dtype,
                                                       int root) {
  using namespace detail;
  std::string what = str_cat("broadcast of ", elements(count, dtype), " from rank ", root);
  const int n = checked_count(*state_, what, count);
  check_peer(*state_, what, root, "root");
  const MPI_Comm comm = state_->comm;
  const auto dev = make_device_staging(
      {{data, count * dtype_size(dtype), state_->rank == root ? StageDir::In : StageDir::Out}});
  return enqueue_collective(
      state_, std::move(what),
      [=] {
        if (n == 0) return;
        if (dev) dev->copy_in();
        check_mpi(MPI_Bcast(dev ? dev->host(0) : data, n, mpi_type(dtype), root, comm));
        if (dev) dev->copy_out();
      },
      "broadcast", count * dtype_size(dtype));
}

std::shared_ptr<Work> MpiCommunicator::send_async(const void* data, size_t count, DType dtype,
                                                  int dst, int tag) {
  using namespace detail;
  std::string what =
      str_cat("send of ", elements(count, dtype), " to rank ", dst, " (tag ", tag, ")");
  const int n = checked_count(*state_, what, count);
  check_peer(*state_, what, dst, "destination");
  TRIDENT_CHECK(tag >= 0 && tag <= state_->tag_ub, state_->context(what), ": tag must be in 0..",
                state_->tag_ub);
  const MPI_Comm comm = state_->comm;
  // The pinned copy lives in the lambda until the task (and its request) is done.
  const auto dev = make_device_staging({{data, count * dtype_size(dtype), StageDir::In}});
  return enqueue(
      state_, std::move(what),
      [=] {
        MPI_Request request = MPI_REQUEST_NULL;
        if (n == 0) return request;
        if (dev) dev->copy_in();
        const void* const buf = dev ? dev->host(0) : data;
        check_mpi(MPI_Isend(buf, n, mpi_type(dtype), dst, tag, comm, &request));
        return request;
      },
      {}, "send", count * dtype_size(dtype), dst);
}

std::shared_ptr<Work> MpiCommunicator::recv_async(void* data, size_t count, DType dtype, int src,
                                                  int tag) {
  using namespace detail;
  std::string what =
      str_cat("recv of ", elements(count, dtype), " from rank ", src, " (tag ", tag, ")");
  const int n = checked_count(*state_, what, count);
  check_peer(*state_, what, src, "source");
  TRIDENT_CHECK(tag >= 0 && tag <= state_->tag_ub, state_->context(what), ": tag must be in 0..",
                state_->tag_ub);
  const MPI_Comm comm = state_->comm;
  const MPI_Datatype type = mpi_type(dtype);
  const auto dev = make_device_staging({{data, count * dtype_size(dtype), StageDir::Out}});
  return enqueue(
      state_, std::move(what),
      [=] {
        MPI_Request request = MPI_REQUEST_NULL;
        if (n == 0) return request;
        if (dev) dev->copy_in();
        check_mpi(MPI_Irecv(dev ? dev->host(0) : data, n, type, src, tag, comm, &request));
        return request;
      },
      [=](const MPI_Status& status) {
        int received = 0;
        check_mpi(MPI_Get_count(&status, type, &received));
        TRIDENT_CHECK(received == n, "received ", received, " elements, expected ", n);
        if (dev) dev->copy_out();
      },
      "recv", count * dtype_size(dtype), src);
}

std::shared_ptr<Work> MpiCommunicator::barrier_async() {
  const MPI_Comm comm = state_->comm;
  return detail::enqueue_collective(
      state_, "barrier", [=] { detail::check_mpi(MPI_Barrier(comm)); }, "barrier");
}

}  // namespace trident
