// NCCL for Trident's CUDA emulation: communicators over MPI, collectives on host memory.
//
// Each ncclComm owns two MPI communicators over exactly its ranks (NCCL rank = MPI rank):
// `data` carries the queued collectives and messages, `control` the splits, so a split from the
// host thread never interleaves with a collective running on a stream worker. A collective is
// queued on its CUDA stream like NCCL's kernel (cuemu::enqueue): when the stream reaches it, it
// copies its input into a staging buffer (so the data is read then, not at the call), posts a
// non-blocking MPI operation, polls MPI_Test (Open MPI progresses only when polled) while
// watching the abort flag, and writes the result out. fp16/bf16 are reduced in fp32 and rounded
// back to nearest even; ncclAvg is the sum divided by the rank count (integer division for
// integer types). Calls inside ncclGroupStart/End become one queued op per stream that posts
// everything before waiting for anything, so paired sends and receives cannot deadlock.
//
// Order: NCCL requires every rank to issue a communicator's operations in the same order; MPI
// matches them in the order they are posted. Each queued op takes a ticket per communicator at
// issue and posts when that communicator's turn reaches it, so posting follows issue order
// even when one communicator is used from several streams. Different communicators run
// concurrently on their streams (MPI_THREAD_MULTIPLE, distinct MPI communicators).
//
// Capture: a collective issued on a capturing stream is recorded as a graph node that makes a
// fresh op at each cudaGraphLaunch, so every replay takes its tickets in launch order and posts
// when the launch stream reaches it, as NCCL's kernels in a CUDA graph do.
//
// Creation: ncclGetUniqueId draws random bytes and the caller's pid. A communicator over all of
// MPI_COMM_WORLD is an MPI_Comm_split of it keyed by NCCL rank; any other one meets through a
// directory named after the id under $TMPDIR (one file per rank holding its world rank, so all
// ranks must share a host) and becomes MPI_Comm_create_group over those world ranks.
//
// Abort: ncclCommAbort sets a flag and returns; an op waiting for MPI stops waiting, its staging
// buffers and requests are left alive (MPI may still write them), and later queued ops of the
// communicator do nothing. Its MPI communicators are then never freed.
#include <cuda_bf16.h>
#include <mpi.h>
#include <nccl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "emu_runtime.hpp"

using Clock = std::chrono::steady_clock;

struct ncclComm {
  MPI_Comm data = MPI_COMM_NULL;
  MPI_Comm control = MPI_COMM_NULL;
  int rank = 0, size = 1, device = 0;
  bool blocking = true;
  std::atomic<bool> aborted{false};
  std::atomic<bool> abandoned{false};  // an op stopped waiting with MPI requests still posted
  std::atomic<bool> finalized{false};  // its MPI communicators are freed

  std::mutex mu;
  std::condition_variable cv;
  int pending = 0;                  // queued ops not finished
  uint64_t tickets = 0;             // the next ticket handed out at issue
  uint64_t turn = 0;                // the ticket whose op may post now
  std::set<uint64_t> void_tickets;  // tickets of ops that will never post
  ncclResult_t async_error = ncclSuccess;
  std::string last_error;

  ~ncclComm() {
    if (abandoned) return;  // MPI may still complete requests on these communicators
    int mpi_finalized = 1;
    MPI_Finalized(&mpi_finalized);
    if (mpi_finalized) return;
    if (data != MPI_COMM_NULL) MPI_Comm_free(&data);
    if (control != MPI_COMM_NULL) MPI_Comm_free(&control);
  }
};

namespace {

using CommPtr = std::shared_ptr<ncclComm>;

// --- Errors -------------------------------------------------------------------------------------

std::mutex g_error_mu;
std::string g_last_error;  // for calls without a communicator (init, group end)

ncclResult_t fail(ncclComm* comm, ncclResult_t r, const std::string& message) {
  if (comm != nullptr) {
    std::lock_guard<std::mutex> lock(comm->mu);
    comm->last_error = message;
  }
  std::lock_guard<std::mutex> lock(g_error_mu);
  g_last_error = message;
  return r;
}

// Records an error found while an op runs on a stream worker: ncclCommGetAsyncError reports it.
void fail_async(ncclComm& comm, ncclResult_t r, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(comm.mu);
    if (comm.async_error == ncclSuccess) comm.async_error = r;
    comm.last_error = message;
  }
  std::fprintf(stderr, "[cuda-emu] NCCL: %s\n", message.c_str());
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

std::string pointer_text(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

// MPI must be initialised with MPI_THREAD_MULTIPLE (ops run on stream worker threads).
ncclResult_t check_mpi(const char* what) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    return fail(nullptr, ncclInvalidUsage,
                std::string(what) + ": MPI is " + (finalized ? "finalized" : "not initialised") +
                    "; the emulated NCCL runs over MPI: call MPI_Init_thread with "
                    "MPI_THREAD_MULTIPLE before any NCCL call");
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided != MPI_THREAD_MULTIPLE)
    return fail(nullptr, ncclInvalidUsage,
                std::string(what) +
                    ": MPI was initialised without MPI_THREAD_MULTIPLE; the "
                    "emulated NCCL calls MPI from CUDA stream worker threads");
  return ncclSuccess;
}

// --- Communicator handles -----------------------------------------------------------------------

std::mutex g_comms_mu;
std::unordered_map<ncclComm*, CommPtr>& comms() {
  static auto* map = new std::unordered_map<ncclComm*, CommPtr>();  // outlives exit-time users
  return *map;
}

CommPtr find_comm(const ncclComm* comm) {
  std::lock_guard<std::mutex> lock(g_comms_mu);
  auto it = comms().find(const_cast<ncclComm*>(comm));
  return it == comms().end() ? nullptr : it->second;
}

ncclResult_t unknown_comm(const char* what, const ncclComm* comm) {
  return fail(nullptr, ncclInvalidArgument,
              std::string(what) + ": communicator " + pointer_text(comm) +
                  " is not a live communicator (never created, destroyed or aborted)");
}

// Wraps an MPI communicator made for exactly the new communicator's ranks: it becomes
// `control`, and a duplicate of it `data`.
ncclResult_t make_comm(MPI_Comm base, int device, bool blocking, ncclComm_t* out,
                       const char* what) {
  MPI_Comm data = MPI_COMM_NULL;
  const int rc = MPI_Comm_dup(base, &data);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&base);
    return fail(nullptr, ncclSystemError,
                std::string(what) + ": MPI_Comm_dup failed: " + mpi_error_text(rc));
  }
  MPI_Comm_set_errhandler(base, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(data, MPI_ERRORS_RETURN);
  auto comm = std::make_shared<ncclComm>();
  comm->control = base;
  comm->data = data;
  comm->device = device;
  comm->blocking = blocking;
  MPI_Comm_rank(base, &comm->rank);
  MPI_Comm_size(base, &comm->size);
  {
    std::lock_guard<std::mutex> lock(g_comms_mu);
    comms().emplace(comm.get(), comm);
  }
  *out = comm.get();
  return ncclSuccess;
}

bool blocking_of(const ncclConfig_t* config, bool inherited) {
  if (config == nullptr || config->blocking == NCCL_CONFIG_UNDEF_INT) return inherited;
  return config->blocking != 0;
}

// --- Unique ids and the rendezvous --------------------------------------------------------------

constexpr char kIdMagic[4] = {'T', 'N', 'C', 'E'};
constexpr size_t kIdBytes = 24;  // magic, pid, 16 random bytes

std::string id_hex(const ncclUniqueId& id) {
  std::string hex;
  char byte[3];
  for (size_t i = 0; i < kIdBytes; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", static_cast<unsigned char>(id.internal[i]));
    hex += byte;
  }
  return hex;
}

int id_tag(const ncclUniqueId& id) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (size_t i = 0; i < kIdBytes; ++i)
    h = (h ^ static_cast<unsigned char>(id.internal[i])) * 16777619u;
  return static_cast<int>(h % 32768u);  // MPI guarantees tags up to 32767
}

std::chrono::milliseconds init_timeout() {
  const char* env = std::getenv("TRIDENT_CUDA_EMU_NCCL_INIT_TIMEOUT_S");
  const double seconds = env != nullptr && *env != '\0' ? std::atof(env) : 120.0;
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
}

// Each rank publishes its world rank in <dir>/<nccl rank> and reads everyone's. On success
// `world_ranks[r]` is the world rank of NCCL rank r and the caller removes its file once the
// MPI communicator exists (every rank has read all files by then).
ncclResult_t rendezvous(int nranks, int rank, const std::string& dir, std::vector<int>* world_ranks,
                        const char* what) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  const std::string context = std::string(what) + " (rank " + std::to_string(rank) + " of " +
                              std::to_string(nranks) + ", world rank " +
                              std::to_string(world_rank) + ", rendezvous " + dir + ")";
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return fail(nullptr, ncclSystemError,
                context + ": cannot create the directory: " + std::strerror(errno));
  const std::string mine = dir + "/" + std::to_string(rank);
  const std::string staged = mine + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(staged);
    out << world_rank << "\n";
    if (!out.flush()) return fail(nullptr, ncclSystemError, context + ": cannot write " + staged);
  }
  // link() publishes the complete file and fails if another process claimed this rank.
  const int linked = link(staged.c_str(), mine.c_str());
  const int link_errno = errno;
  unlink(staged.c_str());
  if (linked != 0)
    return fail(nullptr, link_errno == EEXIST ? ncclInvalidArgument : ncclSystemError,
                context + (link_errno == EEXIST
                               ? ": another process already joined as this rank; every rank "
                                 "of a communicator needs its own rank number"
                               : std::string(": cannot publish ") + mine + ": " +
                                     std::strerror(link_errno)));
  world_ranks->assign(static_cast<size_t>(nranks), -1);
  const auto timeout = init_timeout();
  const auto deadline = Clock::now() + timeout;
  int found = 0;
  for (;;) {
    for (int r = 0; r < nranks; ++r) {
      if ((*world_ranks)[static_cast<size_t>(r)] >= 0) continue;
      std::ifstream in(dir + "/" + std::to_string(r));
      int w = -1;
      if (in >> w) {
        (*world_ranks)[static_cast<size_t>(r)] = w;
        ++found;
      }
    }
    if (found == nranks) return ncclSuccess;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  unlink(mine.c_str());
  rmdir(dir.c_str());
  std::string missing;
  for (int r = 0; r < nranks; ++r)
    if ((*world_ranks)[static_cast<size_t>(r)] < 0) missing += " " + std::to_string(r);
  return fail(nullptr, ncclSystemError,
              context + ": only " + std::to_string(found) + " of " + std::to_string(nranks) +
                  " ranks arrived within " + std::to_string(timeout.count() / 1000) +
                  " s (missing ranks:" + missing +
                  "); every rank must call ncclCommInitRank with the same id and rank count "
                  "(TRIDENT_CUDA_EMU_NCCL_INIT_TIMEOUT_S sets the limit)");
}

ncclResult_t init_rank(ncclComm_t* out, int nranks, const ncclUniqueId& id, int rank,
                       const ncclConfig_t* config, const char* what) {
  if (out == nullptr)
    return fail(nullptr, ncclInvalidArgument, std::string(what) + ": comm is NULL");
  *out = nullptr;
  if (const ncclResult_t r = check_mpi(what); r != ncclSuccess) return r;
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return fail(nullptr, ncclInvalidArgument,
                std::string(what) + ": rank " + std::to_string(rank) + " of " +
                    std::to_string(nranks) + " ranks; need 0 <= rank < nranks");
  if (std::memcmp(id.internal, kIdMagic, sizeof kIdMagic) != 0)
    return fail(nullptr, ncclInvalidArgument,
                std::string(what) +
                    ": the unique id does not come from ncclGetUniqueId (pass "
                    "rank 0's id to every rank, e.g. with MPI_Bcast)");
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (nranks > world_size)
    return fail(nullptr, ncclInvalidArgument,
                std::string(what) + ": " + std::to_string(nranks) +
                    " ranks but MPI_COMM_WORLD has " + std::to_string(world_size) +
                    "; each NCCL rank is one MPI process");
  const int device = cuemu::current_device();
  const bool blocking = blocking_of(config, true);
  MPI_Comm base = MPI_COMM_NULL;
  if (nranks == world_size) {
    const int rc = MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &base);
    if (rc != MPI_SUCCESS)
      return fail(
          nullptr, ncclSystemError,
          std::string(what) + ": MPI_Comm_split of MPI_COMM_WORLD failed: " + mpi_error_text(rc));
    return make_comm(base, device, blocking, out, what);
  }
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/trident-nccl-emu-" + id_hex(id);
  std::vector<int> world_ranks;
  if (const ncclResult_t r = rendezvous(nranks, rank, dir, &world_ranks, what); r != ncclSuccess)
    return r;
  MPI_Group world_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  int rc = MPI_Group_incl(world_group, nranks, world_ranks.data(), &group);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_create_group(MPI_COMM_WORLD, group, id_tag(id), &base);
  if (group != MPI_GROUP_NULL) MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  unlink((dir + "/" + std::to_string(rank)).c_str());
  rmdir(dir.c_str());  // the last rank to leave removes the directory
  if (rc != MPI_SUCCESS)
    return fail(nullptr, ncclSystemError,
                std::string(what) + ": MPI_Comm_create_group over world ranks of " + dir +
                    " failed: " + mpi_error_text(rc));
  return make_comm(base, device, blocking, out, what);
}

// --- Data types and reductions ------------------------------------------------------------------

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

bool half_precision(ncclDataType_t t) {
  return t == ncclFloat16 || t == ncclBfloat16;
}

// The MPI type a reduction runs in (fp16 and bf16 in fp32); MPI_DATATYPE_NULL: not reducible.
MPI_Datatype reduce_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
      return MPI_INT8_T;
    case ncclUint8:
      return MPI_UINT8_T;
    case ncclInt32:
      return MPI_INT32_T;
    case ncclUint32:
      return MPI_UINT32_T;
    case ncclInt64:
      return MPI_INT64_T;
    case ncclUint64:
      return MPI_UINT64_T;
    case ncclFloat16:
    case ncclBfloat16:
    case ncclFloat32:
      return MPI_FLOAT;
    case ncclFloat64:
      return MPI_DOUBLE;
    default:
      return MPI_DATATYPE_NULL;
  }
}

MPI_Op reduce_op(ncclRedOp_t op) {
  switch (op) {
    case ncclSum:
    case ncclAvg:
      return MPI_SUM;
    case ncclProd:
      return MPI_PROD;
    case ncclMax:
      return MPI_MAX;
    case ncclMin:
      return MPI_MIN;
    default:
      return MPI_OP_NULL;
  }
}

float half_to_float(uint16_t h) {
  const float sign = (h & 0x8000u) ? -1.0f : 1.0f;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  if (exp == 31) return mant == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(static_cast<float>(1024 + mant), exp - 25);
}

// Round to nearest even, as __float2half_rn.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (x < 0x38800000u) {  // below 2^-14: a subnormal half, a multiple of 2^-24
    float magnitude;
    std::memcpy(&magnitude, &x, sizeof magnitude);
    return static_cast<uint16_t>(sign |
                                 static_cast<uint16_t>(std::nearbyint(magnitude * 16777216.0f)));
  }
  uint32_t h = ((((x >> 23) - 127 + 15) << 10) | ((x & 0x7fffffu) >> 13));
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return static_cast<uint16_t>(sign | h);
}

// Copies `count` elements of `t` into the buffer a reduction runs on (widening fp16/bf16).
std::vector<unsigned char> to_reduce_buffer(const void* src, size_t count, ncclDataType_t t) {
  if (!half_precision(t)) {
    std::vector<unsigned char> out(count * type_size(t));
    if (!out.empty()) std::memcpy(out.data(), src, out.size());
    return out;
  }
  std::vector<unsigned char> out(count * sizeof(float));
  auto* f = reinterpret_cast<float*>(out.data());
  const auto* h = static_cast<const uint16_t*>(src);
  for (size_t i = 0; i < count; ++i)
    f[i] = t == ncclBfloat16 ? cuemu::bf16::to_float(h[i]) : half_to_float(h[i]);
  return out;
}

void from_reduce_buffer(const std::vector<unsigned char>& in, void* dst, size_t count,
                        ncclDataType_t t) {
  if (!half_precision(t)) {
    if (count > 0) std::memcpy(dst, in.data(), count * type_size(t));
    return;
  }
  const auto* f = reinterpret_cast<const float*>(in.data());
  auto* h = static_cast<uint16_t*>(dst);
  for (size_t i = 0; i < count; ++i)
    h[i] = t == ncclBfloat16 ? cuemu::bf16::from_float_rn(f[i]) : float_to_half(f[i]);
}

template <typename T>
void divide_all(unsigned char* data, size_t count, int n) {
  auto* v = reinterpret_cast<T*>(data);
  for (size_t i = 0; i < count; ++i) v[i] = static_cast<T>(v[i] / static_cast<T>(n));
}

// ncclAvg: the sum divided by the rank count, in the reduction's type.
void divide(std::vector<unsigned char>& buf, size_t count, ncclDataType_t t, int n) {
  switch (t) {
    case ncclInt8:
      return divide_all<int8_t>(buf.data(), count, n);
    case ncclUint8:
      return divide_all<uint8_t>(buf.data(), count, n);
    case ncclInt32:
      return divide_all<int32_t>(buf.data(), count, n);
    case ncclUint32:
      return divide_all<uint32_t>(buf.data(), count, n);
    case ncclInt64:
      return divide_all<int64_t>(buf.data(), count, n);
    case ncclUint64:
      return divide_all<uint64_t>(buf.data(), count, n);
    case ncclFloat64:
      return divide_all<double>(buf.data(), count, n);
    default:
      return divide_all<float>(buf.data(), count, n);
  }
}

// --- Operations ---------------------------------------------------------------------------------

enum class Kind { AllReduce, ReduceScatter, AllGather, Broadcast, Reduce, Send, Recv };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::AllReduce:
      return "ncclAllReduce";
    case Kind::ReduceScatter:
      return "ncclReduceScatter";
    case Kind::AllGather:
      return "ncclAllGather";
    case Kind::Broadcast:
      return "ncclBroadcast";
    case Kind::Reduce:
      return "ncclReduce";
    case Kind::Send:
      return "ncclSend";
    case Kind::Recv:
      return "ncclRecv";
  }
  return "nccl";
}

// One call: its arguments, then (on the stream worker) its staging buffers.
struct Task {
  Kind kind;
  const ncclComm* handle;  // as the caller passed it
  CommPtr comm;
  cudaStream_t stream;
  const void* send;
  void* recv;
  size_t count;  // elements per rank (recvcount of ReduceScatter, sendcount of AllGather)
  ncclDataType_t type;
  ncclRedOp_t op;
  int peer;  // root or peer
  std::vector<unsigned char> in, out;
};

// Starts the MPI operation of `t` after copying its input out of device memory.
int post(Task& t, MPI_Request* request) {
  ncclComm& c = *t.comm;
  const size_t bytes = t.count * type_size(t.type);
  const int n = static_cast<int>(t.count);
  const int nbytes = static_cast<int>(bytes);
  switch (t.kind) {
    case Kind::AllReduce:
      t.in = to_reduce_buffer(t.send, t.count, t.type);
      return MPI_Iallreduce(MPI_IN_PLACE, t.in.data(), n, reduce_type(t.type), reduce_op(t.op),
                            c.data, request);
    case Kind::ReduceScatter:
      t.in = to_reduce_buffer(t.send, t.count * static_cast<size_t>(c.size), t.type);
      t.out.resize(t.in.size() / static_cast<size_t>(c.size));
      return MPI_Ireduce_scatter_block(t.in.data(), t.out.data(), n, reduce_type(t.type),
                                       reduce_op(t.op), c.data, request);
    case Kind::Reduce:
      t.in = to_reduce_buffer(t.send, t.count, t.type);
      return MPI_Ireduce(c.rank == t.peer ? MPI_IN_PLACE : t.in.data(), t.in.data(), n,
                         reduce_type(t.type), reduce_op(t.op), t.peer, c.data, request);
    case Kind::AllGather:
      t.in.assign(static_cast<const unsigned char*>(t.send),
                  static_cast<const unsigned char*>(t.send) + bytes);
      t.out.resize(bytes * static_cast<size_t>(c.size));
      return MPI_Iallgather(t.in.data(), nbytes, MPI_BYTE, t.out.data(), nbytes, MPI_BYTE, c.data,
                            request);
    case Kind::Broadcast:
      t.in.resize(bytes);
      if (c.rank == t.peer) std::memcpy(t.in.data(), t.send, bytes);
      return MPI_Ibcast(t.in.data(), nbytes, MPI_BYTE, t.peer, c.data, request);
    case Kind::Send:
      t.in.assign(static_cast<const unsigned char*>(t.send),
                  static_cast<const unsigned char*>(t.send) + bytes);
      return MPI_Isend(t.in.data(), nbytes, MPI_BYTE, t.peer, 0, c.data, request);
    case Kind::Recv:
      t.in.resize(bytes);
      return MPI_Irecv(t.in.data(), nbytes, MPI_BYTE, t.peer, 0, c.data, request);
  }
  return MPI_ERR_OTHER;
}

// Writes the result of a completed `t` into device memory.
void complete(Task& t) {
  const ncclComm& c = *t.comm;
  switch (t.kind) {
    case Kind::AllReduce:
      if (t.op == ncclAvg) divide(t.in, t.count, t.type, c.size);
      from_reduce_buffer(t.in, t.recv, t.count, t.type);
      return;
    case Kind::ReduceScatter:
      if (t.op == ncclAvg) divide(t.out, t.count, t.type, c.size);
      from_reduce_buffer(t.out, t.recv, t.count, t.type);
      return;
    case Kind::Reduce:
      if (c.rank != t.peer) return;
      if (t.op == ncclAvg) divide(t.in, t.count, t.type, c.size);
      from_reduce_buffer(t.in, t.recv, t.count, t.type);
      return;
    case Kind::AllGather:
      if (!t.out.empty()) std::memcpy(t.recv, t.out.data(), t.out.size());
      return;
    case Kind::Broadcast:
    case Kind::Recv:
      if (!t.in.empty()) std::memcpy(t.recv, t.in.data(), t.in.size());
      return;
    case Kind::Send:
      return;
  }
}

// Staging buffers and requests of ops that stopped waiting: MPI may still write them.
struct Abandoned {
  std::vector<Task> tasks;
  std::vector<MPI_Request> requests;
};
std::mutex g_abandoned_mu;
std::vector<Abandoned>& abandoned() {
  static auto* list = new std::vector<Abandoned>();  // never freed, on purpose
  return *list;
}

// The queued op of one stream: the tasks of one call, or of one group on that stream. Holds a
// ticket per communicator it uses (in order of first use) and a pending count on each; both
// are given back when it finishes, or when it is destroyed without running (not queued, or
// dropped by a device fault).
class Batch {
 public:
  explicit Batch(std::vector<Task> tasks) : tasks_(std::move(tasks)) {
    for (const Task& t : tasks_) {
      bool seen = false;
      for (const Turn& u : turns_) seen = seen || u.comm == t.comm;
      if (!seen) turns_.push_back(Turn{t.comm, 0, false});
    }
    for (Turn& u : turns_) {
      std::lock_guard<std::mutex> lock(u.comm->mu);
      u.ticket = u.comm->tickets++;
      ++u.comm->pending;
    }
  }
  ~Batch() { finish(); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void run() {
    std::vector<MPI_Request> requests(tasks_.size(), MPI_REQUEST_NULL);
    for (Turn& u : turns_) {
      ncclComm& c = *u.comm;
      {
        std::unique_lock<std::mutex> lock(c.mu);
        c.cv.wait(lock, [&] { return c.turn == u.ticket || c.aborted; });
      }
      if (c.aborted) return abandon(std::move(requests));
      for (size_t i = 0; i < tasks_.size(); ++i) {
        if (tasks_[i].comm != u.comm) continue;
        const int rc = post(tasks_[i], &requests[i]);
        if (rc != MPI_SUCCESS) {
          fail_async(c, ncclSystemError,
                     std::string(kind_name(tasks_[i].kind)) + " on rank " + std::to_string(c.rank) +
                         ": MPI failed to start it: " + mpi_error_text(rc));
          return abandon(std::move(requests));
        }
      }
      give_back_turn(u);
    }
    auto sleep = std::chrono::microseconds(10);
    for (;;) {
      int done = 0;
      const int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                                 MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS) {
        for (Turn& u : turns_)
          fail_async(*u.comm, ncclSystemError,
                     std::string(kind_name(tasks_.front().kind)) + " on rank " +
                         std::to_string(u.comm->rank) + " failed in MPI: " + mpi_error_text(rc));
        return abandon(std::move(requests));
      }
      if (done) break;
      for (const Turn& u : turns_)
        if (u.comm->aborted) return abandon(std::move(requests));
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds(500));
    }
    for (Task& t : tasks_) complete(t);
    finish();
  }

 private:
  struct Turn {
    CommPtr comm;
    uint64_t ticket;
    bool taken;  // posted, and the turn passed on
  };

  // Passes the communicator's turn on, past tickets of ops that will never post.
  static void advance(ncclComm& c) {
    ++c.turn;
    while (c.void_tickets.erase(c.turn) > 0) ++c.turn;
  }

  void give_back_turn(Turn& u) {
    if (u.taken) return;
    u.taken = true;
    {
      std::lock_guard<std::mutex> lock(u.comm->mu);
      if (u.comm->turn == u.ticket)
        advance(*u.comm);
      else
        u.comm->void_tickets.insert(u.ticket);
    }
    u.comm->cv.notify_all();
  }

  void abandon(std::vector<MPI_Request> requests) {
    bool posted = false;
    for (MPI_Request r : requests) posted = posted || r != MPI_REQUEST_NULL;
    if (posted) {
      for (Turn& u : turns_) u.comm->abandoned = true;
      std::lock_guard<std::mutex> lock(g_abandoned_mu);
      abandoned().push_back(Abandoned{std::move(tasks_), std::move(requests)});
    }
    finish();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    for (Turn& u : turns_) {
      give_back_turn(u);
      {
        std::lock_guard<std::mutex> lock(u.comm->mu);
        --u.comm->pending;
      }
      u.comm->cv.notify_all();
    }
  }

  std::vector<Task> tasks_;
  std::vector<Turn> turns_;
  bool finished_ = false;
};

// Queues `tasks` (all on one stream) as one op; with a ticket on each of their communicators.
ncclResult_t launch(std::vector<Task> tasks, const char* what) {
  const cudaStream_t stream = tasks.front().stream;
  const CommPtr first = tasks.front().comm;
  // Tickets of a multi-communicator batch are taken together (recursive: a launch not under
  // capture makes its batch inside enqueue_replayable).
  static std::recursive_mutex issue_mu;
  // A fresh batch (fresh tickets and staging buffers) at each issue: the call itself, or each
  // launch of a graph that captured it.
  auto make = [proto = std::make_shared<const std::vector<Task>>(std::move(tasks))] {
    std::lock_guard<std::recursive_mutex> lock(issue_mu);
    auto batch = std::make_shared<Batch>(*proto);
    return std::function<void()>([batch] { batch->run(); });
  };
  cudaError_t rc;
  {
    std::lock_guard<std::recursive_mutex> lock(issue_mu);
    rc = cuemu::enqueue_replayable(stream, make, what);
  }
  if (rc != cudaSuccess)
    return fail(first.get(), ncclUnhandledCudaError,
                std::string(what) + ": cannot queue on stream " + pointer_text(stream) + ": " +
                    cudaGetErrorString(rc));
  return ncclSuccess;
}

// Calls between ncclGroupStart and ncclGroupEnd, per host thread as in NCCL.
thread_local int t_group_depth = 0;
thread_local std::vector<Task> t_group_tasks;
thread_local ncclResult_t t_group_error = ncclSuccess;

ncclResult_t check_buffer(const ncclComm& comm, const void* p, size_t bytes, const char* role,
                          const char* what) {
  int device = -1;
  if (p == nullptr || !cuemu::is_device_range(p, bytes, &device))
    return fail(const_cast<ncclComm*>(&comm), ncclInvalidArgument,
                std::string(what) + ": " + role + " " + pointer_text(p) + " (" +
                    std::to_string(bytes) +
                    " bytes) is not device memory: NCCL moves memory "
                    "from cudaMalloc only");
  if (device != comm.device)
    return fail(const_cast<ncclComm*>(&comm), ncclInvalidArgument,
                std::string(what) + ": " + role + " is on cuda:" + std::to_string(device) +
                    " but the communicator on cuda:" + std::to_string(comm.device));
  return ncclSuccess;
}

// Checks the arguments of one call, then issues it or adds it to the open group.
ncclResult_t submit(Task t) {
  const char* what = kind_name(t.kind);
  ncclComm* handle = t.comm.get();
  ncclResult_t r = ncclSuccess;
  if (t.comm == nullptr) {
    r = unknown_comm(what, t.handle);
  } else if ((r = check_mpi(what)) != ncclSuccess) {
  } else if (t.comm->finalized) {
    r = fail(handle, ncclInvalidUsage, std::string(what) + ": the communicator was finalized");
  } else if (type_size(t.type) == 0) {
    r = fail(handle, ncclInvalidArgument,
             std::string(what) + ": unknown data type " + std::to_string(static_cast<int>(t.type)));
  }
  if (r == ncclSuccess) {
    const ncclComm& c = *t.comm;
    const bool reduces =
        t.kind == Kind::AllReduce || t.kind == Kind::ReduceScatter || t.kind == Kind::Reduce;
    const bool rooted = t.kind == Kind::Broadcast || t.kind == Kind::Reduce;
    const bool p2p = t.kind == Kind::Send || t.kind == Kind::Recv;
    const size_t es = type_size(t.type);
    const size_t total = t.kind == Kind::ReduceScatter || t.kind == Kind::AllGather
                             ? t.count * static_cast<size_t>(c.size)
                             : t.count;
    const int stream_device = cuemu::stream_device(t.stream);
    if (reduces && (reduce_type(t.type) == MPI_DATATYPE_NULL || reduce_op(t.op) == MPI_OP_NULL)) {
      r = fail(handle, ncclInvalidArgument,
               std::string(what) + ": reduction op " + std::to_string(static_cast<int>(t.op)) +
                   " on data type " + std::to_string(static_cast<int>(t.type)) +
                   " is not supported (sum, prod, max, min, avg on integer and floating types)");
    } else if ((rooted || p2p) && (t.peer < 0 || t.peer >= c.size)) {
      r = fail(handle, ncclInvalidArgument,
               std::string(what) + ": " + (rooted ? "root " : "peer ") + std::to_string(t.peer) +
                   " is not a rank of this " + std::to_string(c.size) + "-rank communicator");
    } else if (total > static_cast<size_t>(INT_MAX) / es) {
      r = fail(handle, ncclInvalidArgument,
               std::string(what) + ": " + std::to_string(total) +
                   " elements exceed the emulation's limit of 2^31 bytes per call");
    } else if (stream_device < 0) {
      r = fail(
          handle, ncclInvalidArgument,
          std::string(what) + ": stream " + pointer_text(t.stream) + " is not a live CUDA stream");
    } else if (stream_device != c.device) {
      r = fail(handle, ncclInvalidArgument,
               std::string(what) + ": the stream is on cuda:" + std::to_string(stream_device) +
                   " but the communicator on cuda:" + std::to_string(c.device));
    } else if (t.count > 0) {
      const bool reads =
          t.kind != Kind::Recv && (!rooted || c.rank == t.peer || t.kind == Kind::Reduce);
      const bool writes = t.kind != Kind::Send && (t.kind != Kind::Reduce || c.rank == t.peer);
      const size_t send_bytes = (t.kind == Kind::ReduceScatter ? total : t.count) * es;
      const size_t recv_bytes = (t.kind == Kind::AllGather ? total : t.count) * es;
      if (reads) r = check_buffer(c, t.send, send_bytes, "sendbuff", what);
      if (r == ncclSuccess && writes) r = check_buffer(c, t.recv, recv_bytes, "recvbuff", what);
    }
  }
  if (t_group_depth > 0) {
    if (r != ncclSuccess) {
      if (t_group_error == ncclSuccess) t_group_error = r;
      return r;
    }
    if (t.count > 0) t_group_tasks.push_back(std::move(t));
    return ncclSuccess;
  }
  if (r != ncclSuccess || t.count == 0) return r;
  std::vector<Task> one;
  one.push_back(std::move(t));
  return launch(std::move(one), what);
}

Task make_task(Kind kind, ncclComm_t comm, cudaStream_t stream, const void* send, void* recv,
               size_t count, ncclDataType_t type, ncclRedOp_t op, int peer) {
  return Task{kind, comm, find_comm(comm), stream, send, recv, count, type, op, peer, {}, {}};
}

}  // namespace

// --- The API ------------------------------------------------------------------------------------

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr)
    return fail(nullptr, ncclInvalidArgument, "ncclGetVersion: version is NULL");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (uniqueId == nullptr)
    return fail(nullptr, ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  std::memset(uniqueId->internal, 0, sizeof uniqueId->internal);
  std::memcpy(uniqueId->internal, kIdMagic, sizeof kIdMagic);
  const auto pid = static_cast<uint32_t>(getpid());
  std::memcpy(uniqueId->internal + 4, &pid, sizeof pid);
  std::random_device entropy;
  for (size_t i = 8; i < kIdBytes; i += 4) {
    const uint32_t word = entropy();
    std::memcpy(uniqueId->internal + i, &word, sizeof word);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  return init_rank(comm, nranks, commId, rank, nullptr, "ncclCommInitRank");
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config) {
  return init_rank(comm, nranks, commId, rank, config, "ncclCommInitRankConfig");
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                           ncclConfig_t* config) {
  const char* what = "ncclCommSplit";
  const CommPtr parent = find_comm(comm);
  if (parent == nullptr) return unknown_comm(what, comm);
  if (newcomm == nullptr) return fail(comm, ncclInvalidArgument, "ncclCommSplit: newcomm is NULL");
  *newcomm = nullptr;
  if (const ncclResult_t r = check_mpi(what); r != ncclSuccess) return r;
  if (parent->finalized)
    return fail(comm, ncclInvalidUsage, "ncclCommSplit: the parent communicator was finalized");
  if (color < 0 && color != NCCL_SPLIT_NOCOLOR)
    return fail(comm, ncclInvalidArgument,
                "ncclCommSplit: color " + std::to_string(color) +
                    " is negative; use NCCL_SPLIT_NOCOLOR to stay out of every new communicator");
  MPI_Comm base = MPI_COMM_NULL;
  const int rc = MPI_Comm_split(parent->control,
                                color == NCCL_SPLIT_NOCOLOR ? MPI_UNDEFINED : color, key, &base);
  if (rc != MPI_SUCCESS)
    return fail(comm, ncclSystemError,
                "ncclCommSplit: MPI_Comm_split failed: " + mpi_error_text(rc));
  if (base == MPI_COMM_NULL) return ncclSuccess;
  return make_comm(base, parent->device, blocking_of(config, parent->blocking), newcomm, what);
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommFinalize", comm);
  std::unique_lock<std::mutex> lock(c->mu);
  c->cv.wait(lock, [&] { return c->pending == 0 || c->aborted; });
  if (c->aborted || c->abandoned || c->finalized) return ncclSuccess;
  c->finalized = true;
  lock.unlock();
  if (c->data != MPI_COMM_NULL) MPI_Comm_free(&c->data);
  if (c->control != MPI_COMM_NULL) MPI_Comm_free(&c->control);
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommDestroy", comm);
  const ncclResult_t r = ncclCommFinalize(comm);  // frees nothing twice
  std::lock_guard<std::mutex> lock(g_comms_mu);
  comms().erase(comm);
  return r;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  CommPtr c;
  {
    std::lock_guard<std::mutex> lock(g_comms_mu);
    auto it = comms().find(comm);
    if (it == comms().end()) return unknown_comm("ncclCommAbort", comm);
    c = std::move(it->second);
    comms().erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(c->mu);
    c->aborted = true;
    if (c->async_error == ncclSuccess) c->async_error = ncclRemoteError;
  }
  c->cv.notify_all();
  // Queued ops hold their own references; the last one lets the communicator go.
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommGetAsyncError", comm);
  if (asyncError == nullptr)
    return fail(comm, ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  std::lock_guard<std::mutex> lock(c->mu);
  *asyncError = c->async_error;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommCount", comm);
  if (count == nullptr) return fail(comm, ncclInvalidArgument, "ncclCommCount: count is NULL");
  *count = c->size;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommCuDevice", comm);
  if (device == nullptr) return fail(comm, ncclInvalidArgument, "ncclCommCuDevice: device is NULL");
  *device = c->device;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  const CommPtr c = find_comm(comm);
  if (c == nullptr) return unknown_comm("ncclCommUserRank", comm);
  if (rank == nullptr) return fail(comm, ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
  *rank = c->rank;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
      return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
      return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
      return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
      return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

// The text stays valid until the calling thread's next ncclGetLastError.
const char* ncclGetLastError(ncclComm_t comm) {
  thread_local std::string text;
  const CommPtr c = comm != nullptr ? find_comm(comm) : nullptr;
  if (c != nullptr) {
    std::lock_guard<std::mutex> lock(c->mu);
    text = c->last_error;
  } else {
    std::lock_guard<std::mutex> lock(g_error_mu);
    text = g_last_error;
  }
  return text.c_str();
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  return submit(
      make_task(Kind::AllReduce, comm, stream, sendbuff, recvbuff, count, datatype, op, 0));
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
  return submit(
      make_task(Kind::ReduceScatter, comm, stream, sendbuff, recvbuff, recvcount, datatype, op, 0));
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  return submit(make_task(Kind::AllGather, comm, stream, sendbuff, recvbuff, sendcount, datatype,
                          ncclSum, 0));
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  return submit(
      make_task(Kind::Broadcast, comm, stream, sendbuff, recvbuff, count, datatype, ncclSum, root));
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                        ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
  return submit(
      make_task(Kind::Reduce, comm, stream, sendbuff, recvbuff, count, datatype, op, root));
}

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return submit(
      make_task(Kind::Send, comm, stream, sendbuff, nullptr, count, datatype, ncclSum, peer));
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return submit(
      make_task(Kind::Recv, comm, stream, nullptr, recvbuff, count, datatype, ncclSum, peer));
}

ncclResult_t ncclGroupStart() {
  if (t_group_depth == 0) {
    t_group_tasks.clear();
    t_group_error = ncclSuccess;
  }
  ++t_group_depth;
  return ncclSuccess;
}

// Closing the outermost group issues its calls: one queued op per stream, in call order. A call
// of the group that failed its checks fails the whole group (nothing is issued), as in NCCL.
ncclResult_t ncclGroupEnd() {
  if (t_group_depth == 0)
    return fail(nullptr, ncclInvalidUsage, "ncclGroupEnd: no ncclGroupStart to end");
  if (--t_group_depth > 0) return ncclSuccess;
  std::vector<Task> tasks;
  tasks.swap(t_group_tasks);
  if (t_group_error != ncclSuccess) {
    const ncclResult_t r = t_group_error;
    t_group_error = ncclSuccess;
    return r;
  }
  ncclResult_t result = ncclSuccess;
  std::vector<bool> issued(tasks.size(), false);
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (issued[i]) continue;
    const cudaStream_t stream = tasks[i].stream;
    std::vector<Task> same_stream;
    for (size_t j = i; j < tasks.size(); ++j) {
      if (issued[j] || tasks[j].stream != stream) continue;
      issued[j] = true;
      same_stream.push_back(std::move(tasks[j]));
    }
    const ncclResult_t r = launch(std::move(same_stream), "NCCL group");
    if (r != ncclSuccess && result == ncclSuccess) result = r;
  }
  return result;
}

}  // extern "C"
