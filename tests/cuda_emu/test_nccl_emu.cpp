// The NCCL shim of the CUDA emulation (kernels/cuda/emu/src/nccl.cpp) on 2 and 3 MPI ranks:
// every collective and data type against a result computed here, in place and out of place;
// communicators from a split, from a rendezvous over part of the world, and non-blocking;
// send/receive rings in groups; argument errors; abort of a stuck collective. And the property
// the shim exists for: a collective reads its buffers when its stream reaches it, so without an
// event between the producing stream and the NCCL stream it sees the old data.
#include <mpi.h>
#include <nccl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void cuda_ok(cudaError_t e) {
  INFO(cudaGetErrorString(e));
  REQUIRE(e == cudaSuccess);
}
void nccl_ok(ncclResult_t r, ncclComm_t comm = nullptr) {
  INFO(ncclGetErrorString(r) << ": " << ncclGetLastError(comm));
  REQUIRE(r == ncclSuccess);
}

// --- Values of every data type, read and written as doubles, encoded here independently of the
// shim (exact for the small integers the tests use).

struct TypeInfo {
  ncclDataType_t type;
  const char* name;
  size_t size;
  bool floating;
};

const std::vector<TypeInfo>& all_types() {
  static const std::vector<TypeInfo> all{
      {ncclInt8, "int8", 1, false},      {ncclUint8, "uint8", 1, false},
      {ncclInt32, "int32", 4, false},    {ncclInt64, "int64", 8, false},
      {ncclFloat16, "float16", 2, true}, {ncclBfloat16, "bfloat16", 2, true},
      {ncclFloat32, "float32", 4, true}, {ncclFloat64, "float64", 8, true}};
  return all;
}

uint16_t encode_f16(double x) {
  if (x == 0) return 0;
  int e = 0;
  const double m = std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
  const auto frac = static_cast<uint16_t>(std::lround((m * 2 - 1) * 1024));
  return static_cast<uint16_t>((x < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) | frac);
}
double decode_f16(uint16_t h) {
  const double sign = (h & 0x8000) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

void store(ncclDataType_t t, void* base, size_t i, double v) {
  switch (t) {
    case ncclInt8:
      static_cast<int8_t*>(base)[i] = static_cast<int8_t>(v);
      break;
    case ncclUint8:
      static_cast<uint8_t*>(base)[i] = static_cast<uint8_t>(v);
      break;
    case ncclInt32:
      static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v);
      break;
    case ncclInt64:
      static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v);
      break;
    case ncclFloat16:
      static_cast<uint16_t*>(base)[i] = encode_f16(v);
      break;
    case ncclBfloat16: {
      const float f = static_cast<float>(v);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(u >> 16);
      break;
    }
    case ncclFloat32:
      static_cast<float*>(base)[i] = static_cast<float>(v);
      break;
    default:
      static_cast<double*>(base)[i] = v;
  }
}

double load(ncclDataType_t t, const void* base, size_t i) {
  switch (t) {
    case ncclInt8:
      return static_cast<const int8_t*>(base)[i];
    case ncclUint8:
      return static_cast<const uint8_t*>(base)[i];
    case ncclInt32:
      return static_cast<const int32_t*>(base)[i];
    case ncclInt64:
      return static_cast<double>(static_cast<const int64_t*>(base)[i]);
    case ncclFloat16:
      return decode_f16(static_cast<const uint16_t*>(base)[i]);
    case ncclBfloat16: {
      const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case ncclFloat32:
      return static_cast<const float*>(base)[i];
    default:
      return static_cast<const double*>(base)[i];
  }
}

// Relative tolerance of a rounded result (averages are not exact in the floating types).
double tolerance(ncclDataType_t t) {
  switch (t) {
    case ncclFloat16:
      return 1e-3;
    case ncclBfloat16:
      return 8e-3;
    case ncclFloat32:
      return 1e-6;
    case ncclFloat64:
      return 1e-12;
    default:
      return 0;
  }
}

// Inputs: small positive integers, exact everywhere and in sums over 3 ranks; for products a
// smaller range so the product of 3 ranks fits int8 and is exact in bf16.
double value(int rank, size_t i, ncclRedOp_t op) {
  if (op == ncclProd) return static_cast<double>((static_cast<size_t>(rank) + i) % 3 + 1);
  return static_cast<double>((static_cast<size_t>(rank) * 7 + i * 3) % 11 + 1);
}

double reduce(ncclRedOp_t op, const std::vector<double>& v, bool floating) {
  double r = v[0];
  for (size_t k = 1; k < v.size(); ++k) {
    if (op == ncclSum || op == ncclAvg) r += v[k];
    if (op == ncclProd) r *= v[k];
    if (op == ncclMax) r = std::max(r, v[k]);
    if (op == ncclMin) r = std::min(r, v[k]);
  }
  if (op == ncclAvg) {
    r /= static_cast<double>(v.size());
    if (!floating) r = std::floor(r);  // integer average: the sum divided in integers
  }
  return r;
}

const char* op_name(ncclRedOp_t op) {
  switch (op) {
    case ncclSum:
      return "sum";
    case ncclProd:
      return "prod";
    case ncclMax:
      return "max";
    case ncclMin:
      return "min";
    default:
      return "avg";
  }
}

// --- RAII handles

struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    cuda_ok(cudaMalloc(&p, n));
    cuda_ok(cudaMemset(p, 0, n));
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  unsigned char* at(size_t offset) const { return static_cast<unsigned char*>(p) + offset; }
  void upload(const std::vector<unsigned char>& h, size_t offset = 0) const {
    cuda_ok(cudaMemcpy(at(offset), h.data(), h.size(), cudaMemcpyHostToDevice));
  }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> h(bytes);
    cuda_ok(cudaMemcpy(h.data(), p, bytes, cudaMemcpyDeviceToHost));
    return h;
  }
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

// A communicator over MPI_COMM_WORLD (rank 0's id broadcast over MPI), destroyed at scope end.
struct Comm {
  ncclComm_t c = nullptr;
  explicit Comm(ncclComm_t comm) : c(comm) {}
  Comm() {
    ncclUniqueId id;
    if (world_rank() == 0) nccl_ok(ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_ok(ncclCommInitRank(&c, world_size(), id, world_rank()));
  }
  ~Comm() {
    if (c != nullptr) ncclCommDestroy(c);
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  int rank() const {
    int r = -1;
    ncclCommUserRank(c, &r);
    return r;
  }
  int size() const {
    int n = -1;
    ncclCommCount(c, &n);
    return n;
  }
};

std::vector<unsigned char> host_values(const TypeInfo& t, size_t n, int rank, ncclRedOp_t op) {
  std::vector<unsigned char> h(n * t.size);
  for (size_t i = 0; i < n; ++i) store(t.type, h.data(), i, value(rank, i, op));
  return h;
}

// Counts the elements of `got` (from element `first` on) that differ from `want(i)`.
template <typename Want>
size_t mismatches(const TypeInfo& t, const std::vector<unsigned char>& got, size_t first, size_t n,
                  Want want) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double w = want(i), g = load(t.type, got.data(), first + i);
    if (std::fabs(g - w) > tolerance(t.type) * std::fabs(w)) {
      if (bad == 0) UNSCOPED_INFO("element " << i << ": got " << g << ", expected " << w);
      ++bad;
    }
  }
  return bad;
}

constexpr size_t kCount = 1031;  // per rank; not a multiple of any block size
const ncclRedOp_t kOps[] = {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg};

}  // namespace

TEST_CASE("nccl emu: communicator over the world, version, error strings", "[cuda-emu][nccl]") {
  Comm comm;
  CHECK(comm.size() == world_size());
  CHECK(comm.rank() == world_rank());
  int device = -1;
  nccl_ok(ncclCommCuDevice(comm.c, &device));
  CHECK(device == 0);
  ncclResult_t async = ncclInternalError;
  nccl_ok(ncclCommGetAsyncError(comm.c, &async));
  CHECK(async == ncclSuccess);
  int version = 0;
  nccl_ok(ncclGetVersion(&version));
  CHECK(version == NCCL_VERSION_CODE);
  CHECK(NCCL_VERSION_CODE == NCCL_VERSION(2, 28, 9));
  CHECK(std::string(ncclGetErrorString(ncclInvalidArgument)).find("invalid argument") == 0);
}

TEST_CASE("nccl emu: all-reduce of every type and op, in place and out of place",
          "[cuda-emu][nccl]") {
  Comm comm;
  Stream stream;
  const int n = world_size(), me = world_rank();
  for (const TypeInfo& t : all_types()) {
    for (ncclRedOp_t op : kOps) {
      for (bool in_place : {false, true}) {
        INFO(t.name << " " << op_name(op) << (in_place ? " in place" : " out of place"));
        DeviceBuffer send(kCount * t.size), recv(kCount * t.size);
        send.upload(host_values(t, kCount, me, op));
        void* out = in_place ? send.p : recv.p;
        nccl_ok(ncclAllReduce(send.p, out, kCount, t.type, op, comm.c, stream.s), comm.c);
        cuda_ok(cudaStreamSynchronize(stream.s));
        const auto got = (in_place ? send : recv).download();
        CHECK(mismatches(t, got, 0, kCount, [&](size_t i) {
                std::vector<double> v;
                for (int r = 0; r < n; ++r) v.push_back(value(r, i, op));
                return reduce(op, v, t.floating);
              }) == 0);
      }
    }
  }
}

TEST_CASE(
    "nccl emu: reduce-scatter, reduce, all-gather and broadcast of every type, in place "
    "and out of place",
    "[cuda-emu][nccl]") {
  Comm comm;
  Stream stream;
  const int n = world_size(), me = world_rank();
  const size_t un = static_cast<size_t>(n), ume = static_cast<size_t>(me);
  const int root = n - 1;  // not rank 0, so a root argument that is ignored would show
  for (const TypeInfo& t : all_types()) {
    for (bool in_place : {false, true}) {
      INFO(t.name << (in_place ? " in place" : " out of place"));
      {  // reduce-scatter: rank r gets the reduction of elements [r*count, (r+1)*count)
        for (ncclRedOp_t op : {ncclSum, ncclMax, ncclAvg}) {
          INFO("ncclReduceScatter " << op_name(op));
          DeviceBuffer send(un * kCount * t.size), recv(kCount * t.size);
          send.upload(host_values(t, un * kCount, me, op));
          void* out = in_place ? send.at(ume * kCount * t.size) : recv.p;
          nccl_ok(ncclReduceScatter(send.p, out, kCount, t.type, op, comm.c, stream.s), comm.c);
          cuda_ok(cudaStreamSynchronize(stream.s));
          const auto got = (in_place ? send : recv).download();
          CHECK(mismatches(t, got, in_place ? ume * kCount : 0, kCount, [&](size_t i) {
                  std::vector<double> v;
                  for (int r = 0; r < n; ++r) v.push_back(value(r, ume * kCount + i, op));
                  return reduce(op, v, t.floating);
                }) == 0);
        }
      }
      {  // reduce to the last rank; the others' recvbuff is not written
        INFO("ncclReduce");
        DeviceBuffer send(kCount * t.size), recv(kCount * t.size);
        send.upload(host_values(t, kCount, me, ncclSum));
        void* out = in_place ? send.p : recv.p;
        nccl_ok(ncclReduce(send.p, out, kCount, t.type, ncclSum, root, comm.c, stream.s), comm.c);
        cuda_ok(cudaStreamSynchronize(stream.s));
        const auto got = (in_place ? send : recv).download();
        CHECK(mismatches(t, got, 0, kCount, [&](size_t i) {
                if (me != root) return in_place ? value(me, i, ncclSum) : 0.0;
                double s = 0;
                for (int r = 0; r < n; ++r) s += value(r, i, ncclSum);
                return s;
              }) == 0);
      }
      {  // all-gather: rank r's elements land at [r*count, (r+1)*count)
        INFO("ncclAllGather");
        DeviceBuffer send(kCount * t.size), recv(un * kCount * t.size);
        const auto mine = host_values(t, kCount, me, ncclSum);
        const void* in = send.p;
        if (in_place) {
          recv.upload(mine, ume * kCount * t.size);
          in = recv.at(ume * kCount * t.size);
        } else {
          send.upload(mine);
        }
        nccl_ok(ncclAllGather(in, recv.p, kCount, t.type, comm.c, stream.s), comm.c);
        cuda_ok(cudaStreamSynchronize(stream.s));
        CHECK(mismatches(t, recv.download(), 0, un * kCount, [&](size_t i) {
                return value(static_cast<int>(i / kCount), i % kCount, ncclSum);
              }) == 0);
      }
      {  // broadcast from the last rank
        INFO("ncclBroadcast");
        DeviceBuffer send(kCount * t.size), recv(kCount * t.size);
        send.upload(host_values(t, kCount, me, ncclSum));
        void* out = in_place ? send.p : recv.p;
        nccl_ok(ncclBroadcast(send.p, out, kCount, t.type, root, comm.c, stream.s), comm.c);
        cuda_ok(cudaStreamSynchronize(stream.s));
        CHECK(mismatches(t, (in_place ? send : recv).download(), 0, kCount,
                         [&](size_t i) { return value(root, i, ncclSum); }) == 0);
      }
    }
  }
}

TEST_CASE("nccl emu: a collective on the legacy default stream, and a zero count",
          "[cuda-emu][nccl]") {
  Comm comm;
  const TypeInfo& f32 = all_types()[6];
  DeviceBuffer d(kCount * 4);
  d.upload(host_values(f32, kCount, world_rank(), ncclSum));
  nccl_ok(ncclAllReduce(d.p, d.p, kCount, ncclFloat32, ncclMax, comm.c, nullptr), comm.c);
  nccl_ok(ncclAllReduce(nullptr, nullptr, 0, ncclFloat32, ncclSum, comm.c, nullptr), comm.c);
  cuda_ok(cudaDeviceSynchronize());
  CHECK(mismatches(f32, d.download(), 0, kCount, [&](size_t i) {
          double m = 0;
          for (int r = 0; r < world_size(); ++r) m = std::max(m, value(r, i, ncclSum));
          return m;
        }) == 0);
}

TEST_CASE(
    "nccl emu: a collective reads its buffer when its stream reaches it; an event orders "
    "it after the producer",
    "[cuda-emu][nccl]") {
  Comm comm;
  Stream producer, nccl_stream;
  const int n = world_size(), me = world_rank();
  constexpr size_t kN = 256;
  std::vector<float> old_values(kN, static_cast<float>(me + 1));
  float* fresh = nullptr;  // pinned, so cudaMemcpyAsync reads it when the stream gets there
  cuda_ok(cudaMallocHost(reinterpret_cast<void**>(&fresh), kN * sizeof(float)));
  for (size_t i = 0; i < kN; ++i) fresh[i] = 100.0f * static_cast<float>(me + 1);
  DeviceBuffer send(kN * sizeof(float)), recv(kN * sizeof(float));
  cudaEvent_t produced = nullptr;
  cuda_ok(cudaEventCreateWithFlags(&produced, cudaEventDisableTiming));
  const float sum_old = static_cast<float>(n * (n + 1) / 2);
  const float sum_new = 100.0f * sum_old;

  // The producer stream is slow: a host function sleeps before the copy of the new values.
  auto sleep_200ms = [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(200)); };
  for (bool ordered : {false, true}) {
    INFO((ordered ? "with cudaStreamWaitEvent" : "without an event"));
    cuda_ok(cudaMemcpy(send.p, old_values.data(), kN * sizeof(float), cudaMemcpyHostToDevice));
    cuda_ok(cudaLaunchHostFunc(producer.s, sleep_200ms, nullptr));
    cuda_ok(cudaMemcpyAsync(send.p, fresh, kN * sizeof(float), cudaMemcpyHostToDevice, producer.s));
    if (ordered) {
      cuda_ok(cudaEventRecord(produced, producer.s));
      cuda_ok(cudaStreamWaitEvent(nccl_stream.s, produced, 0));
    }
    nccl_ok(ncclAllReduce(send.p, recv.p, kN, ncclFloat32, ncclSum, comm.c, nccl_stream.s), comm.c);
    cuda_ok(cudaStreamSynchronize(nccl_stream.s));
    cuda_ok(cudaStreamSynchronize(producer.s));
    std::vector<float> got(kN);
    cuda_ok(cudaMemcpy(got.data(), recv.p, kN * sizeof(float), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (float g : got) bad += g != (ordered ? sum_new : sum_old) ? 1 : 0;
    INFO("first element " << got[0] << "; old data sums to " << sum_old << ", new to " << sum_new);
    CHECK(bad == 0);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  cudaEventDestroy(produced);
  cudaFreeHost(fresh);
}

TEST_CASE("nccl emu: one communicator on two streams posts in issue order", "[cuda-emu][nccl]") {
  // Rank 0's first stream is held up, so its second collective reaches MPI first unless the
  // shim keeps issue order; same-sized collectives would then silently swap their results.
  Comm comm;
  Stream first, second;
  const int n = world_size(), me = world_rank();
  constexpr size_t kN = 64;
  DeviceBuffer x(kN * 4), y(kN * 4);
  std::vector<int32_t> xv(kN, me + 1), yv(kN, 1000 * (me + 1));
  cuda_ok(cudaMemcpy(x.p, xv.data(), kN * 4, cudaMemcpyHostToDevice));
  cuda_ok(cudaMemcpy(y.p, yv.data(), kN * 4, cudaMemcpyHostToDevice));
  if (me == 0) {
    cuda_ok(cudaLaunchHostFunc(
        first.s, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); },
        nullptr));
  }
  nccl_ok(ncclAllReduce(x.p, x.p, kN, ncclInt32, ncclSum, comm.c, first.s), comm.c);
  nccl_ok(ncclAllReduce(y.p, y.p, kN, ncclInt32, ncclSum, comm.c, second.s), comm.c);
  cuda_ok(cudaStreamSynchronize(second.s));
  cuda_ok(cudaStreamSynchronize(first.s));
  cuda_ok(cudaMemcpy(xv.data(), x.p, kN * 4, cudaMemcpyDeviceToHost));
  cuda_ok(cudaMemcpy(yv.data(), y.p, kN * 4, cudaMemcpyDeviceToHost));
  CHECK(xv[0] == n * (n + 1) / 2);
  CHECK(yv[kN - 1] == 1000 * n * (n + 1) / 2);
}

TEST_CASE(
    "nccl emu: a collective captured into a CUDA graph on a forked stream runs at each launch",
    "[cuda-emu][nccl]") {
  // As trident's NCCL communicator issues: the compute stream records an event, the NCCL stream
  // waits on it (and so joins the capture), runs the all-reduce and records an event the
  // compute stream waits on (the join). The capture runs nothing; each launch all-reduces the
  // input of that moment, in stream order with the copies around it, and takes its place in the
  // communicator's order at launch (an eager all-reduce between two launches).
  Comm comm;
  Stream compute, nccl;
  const int n = world_size(), me = world_rank();
  constexpr size_t kN = 32;
  DeviceBuffer input(kN * 4), x(kN * 4), y(kN * 4), z(4);
  cudaEvent_t fork = nullptr, join = nullptr;
  cuda_ok(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  cuda_ok(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  cuda_ok(cudaStreamBeginCapture(compute.s, cudaStreamCaptureModeGlobal));
  cuda_ok(cudaMemcpyAsync(x.p, input.p, kN * 4, cudaMemcpyDeviceToDevice, compute.s));
  cuda_ok(cudaEventRecord(fork, compute.s));
  cuda_ok(cudaStreamWaitEvent(nccl.s, fork, 0));
  cudaStreamCaptureStatus joined = cudaStreamCaptureStatusNone;
  cuda_ok(cudaStreamIsCapturing(nccl.s, &joined));
  CHECK(joined == cudaStreamCaptureStatusActive);
  nccl_ok(ncclAllReduce(x.p, x.p, kN, ncclInt32, ncclSum, comm.c, nccl.s), comm.c);
  cuda_ok(cudaEventRecord(join, nccl.s));
  cuda_ok(cudaStreamWaitEvent(compute.s, join, 0));
  cuda_ok(cudaMemcpyAsync(y.p, x.p, kN * 4, cudaMemcpyDeviceToDevice, compute.s));
  cudaGraph_t graph = nullptr;
  cuda_ok(cudaStreamEndCapture(compute.s, &graph));
  cuda_ok(cudaStreamIsCapturing(nccl.s, &joined));
  CHECK(joined == cudaStreamCaptureStatusNone);
  cudaGraphExec_t exec = nullptr;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0));
  cuda_ok(cudaStreamSynchronize(compute.s));
  std::vector<int32_t> got(kN, -1);
  cuda_ok(cudaMemcpy(got.data(), y.p, kN * 4, cudaMemcpyDeviceToHost));
  CHECK(got[0] == 0);  // captured, not run
  for (int launch = 1; launch <= 3; ++launch) {
    std::vector<int32_t> in(kN);
    for (size_t i = 0; i < kN; ++i) in[i] = launch * (me + 1) + static_cast<int32_t>(i);
    cuda_ok(cudaMemcpy(input.p, in.data(), kN * 4, cudaMemcpyHostToDevice));
    if (me == 0 && launch == 2) {  // rank 0 late: the others' replays must wait for it
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    cuda_ok(cudaGraphLaunch(exec, compute.s));
    const int32_t one = me + 1;
    cuda_ok(cudaMemcpy(z.p, &one, 4, cudaMemcpyHostToDevice));
    nccl_ok(ncclAllReduce(z.p, z.p, 1, ncclInt32, ncclMax, comm.c, nccl.s), comm.c);
    cuda_ok(cudaStreamSynchronize(compute.s));
    cuda_ok(cudaStreamSynchronize(nccl.s));
    cuda_ok(cudaMemcpy(got.data(), y.p, kN * 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (size_t i = 0; i < kN; ++i)
      bad += got[i] != launch * n * (n + 1) / 2 + n * static_cast<int32_t>(i);
    INFO("launch " << launch << ": y[0] = " << got[0]);
    CHECK(bad == 0);
    int32_t top = 0;
    cuda_ok(cudaMemcpy(&top, z.p, 4, cudaMemcpyDeviceToHost));
    CHECK(top == n);
  }
  cuda_ok(cudaGraphExecDestroy(exec));
  cuda_ok(cudaGraphDestroy(graph));

  // A forked stream whose work the capture never waits for: the capture fails, unjoined. (Relaxed
  // mode, where the host may query events, but not one recorded in the capture in progress.)
  cuda_ok(cudaStreamBeginCapture(compute.s, cudaStreamCaptureModeRelaxed));
  cuda_ok(cudaEventRecord(fork, compute.s));
  CHECK(std::string(cudaGetErrorName(cudaEventQuery(fork))) == "cudaErrorCapturedEvent");
  cudaGetLastError();
  cuda_ok(cudaStreamWaitEvent(nccl.s, fork, 0));
  cuda_ok(cudaMemsetAsync(z.p, 0, 4, nccl.s));
  graph = nullptr;
  const cudaError_t unjoined = cudaStreamEndCapture(compute.s, &graph);
  CHECK(std::string(cudaGetErrorName(unjoined)) == "cudaErrorStreamCaptureUnjoined");
  CHECK(graph == nullptr);
  cudaGetLastError();
  cuda_ok(cudaStreamIsCapturing(nccl.s, &joined));
  CHECK(joined == cudaStreamCaptureStatusNone);
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE(
    "nccl emu: split by rank parity, no color, reversed keys; communicators run "
    "concurrently on their streams",
    "[cuda-emu][nccl]") {
  Comm world;
  const int n = world_size(), me = world_rank();
  ncclComm_t raw = nullptr;
  nccl_ok(ncclCommSplit(world.c, me % 2, -me, &raw, nullptr), world.c);
  Comm parity(raw);
  REQUIRE(raw != nullptr);
  std::vector<int> members;  // world ranks of my parity, in NCCL rank order (keys reversed)
  for (int r = n - 1; r >= 0; --r)
    if (r % 2 == me % 2) members.push_back(r);
  CHECK(parity.size() == static_cast<int>(members.size()));
  CHECK(members[static_cast<size_t>(parity.rank())] == me);

  ncclComm_t without_zero = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  nccl_ok(ncclCommSplit(world.c, me == 0 ? NCCL_SPLIT_NOCOLOR : 0, me, &without_zero, &config),
          world.c);
  Comm rest(without_zero);
  CHECK((without_zero == nullptr) == (me == 0));

  // A collective on each of three communicators at once, on three streams.
  Stream s1, s2, s3;
  DeviceBuffer a(4), b(4 * members.size()), c(4), e(4);
  const int32_t mine = me + 1;
  for (DeviceBuffer* d : {&a, &c, &e}) cuda_ok(cudaMemcpy(d->p, &mine, 4, cudaMemcpyHostToDevice));
  nccl_ok(ncclAllReduce(a.p, a.p, 1, ncclInt32, ncclSum, world.c, s1.s), world.c);
  nccl_ok(ncclAllGather(c.p, b.p, 1, ncclInt32, parity.c, s2.s), parity.c);
  if (rest.c != nullptr) {
    nccl_ok(ncclAllReduce(e.p, e.p, 1, ncclInt32, ncclMin, rest.c, s3.s), rest.c);
  }
  for (Stream* s : {&s1, &s2, &s3}) cuda_ok(cudaStreamSynchronize(s->s));
  int32_t sum = 0, min_rest = 0;
  std::vector<int32_t> gathered(members.size());
  cuda_ok(cudaMemcpy(&sum, a.p, 4, cudaMemcpyDeviceToHost));
  cuda_ok(cudaMemcpy(gathered.data(), b.p, b.bytes, cudaMemcpyDeviceToHost));
  cuda_ok(cudaMemcpy(&min_rest, e.p, 4, cudaMemcpyDeviceToHost));
  CHECK(sum == n * (n + 1) / 2);
  for (size_t k = 0; k < members.size(); ++k) CHECK(gathered[k] == members[k] + 1);
  if (me != 0) CHECK(min_rest == 2);
}

TEST_CASE("nccl emu: communicators over part of the world meet through the id; blocking = 0",
          "[cuda-emu][nccl]") {
  const int n = world_size(), me = world_rank();
  // Groups by parity (2 ranks: {0} {1}; 3 ranks: {0, 2} {1}), NCCL ranks in reverse world order.
  MPI_Comm group_mpi = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, me % 2, -me, &group_mpi);
  int group_rank = 0, group_size = 0;
  MPI_Comm_rank(group_mpi, &group_rank);
  MPI_Comm_size(group_mpi, &group_size);
  ncclUniqueId id;
  if (group_rank == 0) nccl_ok(ncclGetUniqueId(&id));
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, group_mpi);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t raw = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&raw, group_size, id, group_rank, &config);
  while (r == ncclInProgress) ncclCommGetAsyncError(raw, &r);
  nccl_ok(r);
  Comm comm(raw);
  CHECK(comm.size() == group_size);
  CHECK(comm.rank() == group_rank);

  Stream stream;
  DeviceBuffer d(4), all(4 * static_cast<size_t>(group_size));
  const int32_t mine = me;
  cuda_ok(cudaMemcpy(d.p, &mine, 4, cudaMemcpyHostToDevice));
  nccl_ok(ncclAllGather(d.p, all.p, 1, ncclInt32, comm.c, stream.s), comm.c);
  cuda_ok(cudaStreamSynchronize(stream.s));
  std::vector<int32_t> got(static_cast<size_t>(group_size));
  cuda_ok(cudaMemcpy(got.data(), all.p, all.bytes, cudaMemcpyDeviceToHost));
  std::vector<int32_t> want;
  for (int w = n - 1; w >= 0; --w)
    if (w % 2 == me % 2) want.push_back(w);
  CHECK(got == want);

  // The rendezvous directory is gone once every rank is through.
  MPI_Barrier(MPI_COMM_WORLD);
  const char* tmp = std::getenv("TMPDIR");
  std::string dir =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/trident-nccl-emu-";
  char byte[3];
  for (size_t i = 0; i < 24; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", static_cast<unsigned char>(id.internal[i]));
    dir += byte;
  }
  struct stat info;
  CHECK(stat(dir.c_str(), &info) != 0);
  MPI_Comm_free(&group_mpi);
}

TEST_CASE("nccl emu: send/receive rings in a group, nested groups, and pairs outside a group",
          "[cuda-emu][nccl]") {
  Comm comm;
  Stream stream;
  const int n = world_size(), me = world_rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  // 1 MiB per message: over MPI's eager limit, so a send waits for its receive.
  constexpr size_t kN = 1 << 18;
  std::vector<float> mine(kN);
  for (size_t i = 0; i < kN; ++i) mine[i] = static_cast<float>(me * 1000000 + static_cast<int>(i));
  DeviceBuffer send(kN * 4), recv(kN * 4), sum(4);
  cuda_ok(cudaMemcpy(send.p, mine.data(), kN * 4, cudaMemcpyHostToDevice));
  const float one = 1.0f;
  cuda_ok(cudaMemcpy(sum.p, &one, 4, cudaMemcpyHostToDevice));

  // Both directions of the ring and a collective in one (nested) group: nothing is issued
  // before the outermost ncclGroupEnd.
  nccl_ok(ncclGroupStart());
  nccl_ok(ncclGroupStart());
  nccl_ok(ncclSend(send.p, kN, ncclFloat32, next, comm.c, stream.s), comm.c);
  nccl_ok(ncclRecv(recv.p, kN, ncclFloat32, prev, comm.c, stream.s), comm.c);
  nccl_ok(ncclGroupEnd());
  cuda_ok(cudaStreamSynchronize(stream.s));
  std::vector<float> got(kN);
  cuda_ok(cudaMemcpy(got.data(), recv.p, kN * 4, cudaMemcpyDeviceToHost));
  CHECK(got[0] == 0.0f);  // still the memset's zeros
  nccl_ok(ncclAllReduce(sum.p, sum.p, 1, ncclFloat32, ncclSum, comm.c, stream.s), comm.c);
  nccl_ok(ncclGroupEnd());
  cuda_ok(cudaStreamSynchronize(stream.s));
  cuda_ok(cudaMemcpy(got.data(), recv.p, kN * 4, cudaMemcpyDeviceToHost));
  size_t bad = 0;
  for (size_t i = 0; i < kN; ++i)
    bad += got[i] != static_cast<float>(prev * 1000000 + static_cast<int>(i)) ? 1 : 0;
  CHECK(bad == 0);
  float total = 0;
  cuda_ok(cudaMemcpy(&total, sum.p, 4, cudaMemcpyDeviceToHost));
  CHECK(total == static_cast<float>(n));

  // Outside a group each call is its own op: ranks 0 and 1 exchange in matching order.
  if (me < 2 && n >= 2) {
    const int peer = 1 - me;
    cuda_ok(cudaMemset(recv.p, 0, kN * 4));
    if (me == 0) {
      nccl_ok(ncclSend(send.p, kN, ncclFloat32, peer, comm.c, stream.s), comm.c);
      nccl_ok(ncclRecv(recv.p, kN, ncclFloat32, peer, comm.c, stream.s), comm.c);
    } else {
      nccl_ok(ncclRecv(recv.p, kN, ncclFloat32, peer, comm.c, stream.s), comm.c);
      nccl_ok(ncclSend(send.p, kN, ncclFloat32, peer, comm.c, stream.s), comm.c);
    }
    cuda_ok(cudaStreamSynchronize(stream.s));
    cuda_ok(cudaMemcpy(got.data(), recv.p, kN * 4, cudaMemcpyDeviceToHost));
    CHECK(got[kN - 1] == static_cast<float>(peer * 1000000 + static_cast<int>(kN - 1)));
  }
}

TEST_CASE("nccl emu: bad arguments are refused with a message", "[cuda-emu][nccl]") {
  Comm comm;
  Stream stream;
  std::vector<float> host(16);
  DeviceBuffer d(16 * 4);
  CHECK(ncclAllReduce(host.data(), d.p, 16, ncclFloat32, ncclSum, comm.c, stream.s) ==
        ncclInvalidArgument);
  CHECK_THAT(ncclGetLastError(comm.c),
             Catch::Contains("sendbuff") && Catch::Contains("is not device memory"));
  CHECK(ncclAllReduce(d.p, d.p, 17, ncclFloat32, ncclSum, comm.c, stream.s) == ncclInvalidArgument);
  CHECK(ncclBroadcast(d.p, d.p, 16, ncclFloat32, world_size(), comm.c, stream.s) ==
        ncclInvalidArgument);
  CHECK_THAT(ncclGetLastError(comm.c), Catch::Contains("root"));
  CHECK(ncclSend(d.p, 4, ncclFloat32, -1, comm.c, stream.s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(d.p, d.p, 16, ncclFloat8e4m3, ncclSum, comm.c, stream.s) ==
        ncclInvalidArgument);
  CHECK(ncclGroupEnd() == ncclInvalidUsage);
  // A group with a refused call issues nothing and fails at its end.
  nccl_ok(ncclGroupStart());
  CHECK(ncclSend(host.data(), 4, ncclFloat32, 0, comm.c, stream.s) == ncclInvalidArgument);
  CHECK(ncclGroupEnd() == ncclInvalidArgument);
  ncclUniqueId zero;
  std::memset(&zero, 0, sizeof zero);
  ncclComm_t none = nullptr;
  CHECK(ncclCommInitRank(&none, world_size(), zero, world_rank()) == ncclInvalidArgument);
  CHECK_THAT(ncclGetLastError(nullptr), Catch::Contains("ncclGetUniqueId"));
  CHECK(none == nullptr);
  ncclResult_t async = ncclInternalError;
  nccl_ok(ncclCommGetAsyncError(comm.c, &async));
  CHECK(async == ncclSuccess);
}

TEST_CASE("nccl emu: ncclCommAbort releases a collective that no peer joins", "[cuda-emu][nccl]") {
  const int me = world_rank();
  if (world_size() < 2) {
    WARN("needs 2 ranks: on one the collective completes alone");
    return;
  }
  Comm world;
  ncclComm_t raw = nullptr;
  nccl_ok(ncclCommSplit(world.c, 0, me, &raw, nullptr), world.c);
  Comm comm(raw);
  Stream stream;
  DeviceBuffer d(64 * 4);
  const std::vector<unsigned char> before(64 * 4, 7);
  d.upload(before);
  if (me == 0) {
    nccl_ok(ncclAllReduce(d.p, d.p, 64, ncclFloat32, ncclSum, comm.c, stream.s), comm.c);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(cudaStreamQuery(stream.s) == cudaErrorNotReady);  // waits for the other ranks
    const auto start = std::chrono::steady_clock::now();
    nccl_ok(ncclCommAbort(comm.c));
    comm.c = nullptr;
    cuda_ok(cudaStreamSynchronize(stream.s));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    CHECK(d.download() == before);  // the abandoned collective wrote nothing
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (me != 0) {
    // The peers join late; rank 0's abandoned request completes inside MPI (rank 0 keeps
    // progressing it in the barrier below), into the shim's buffers, not into `d`.
    nccl_ok(ncclAllReduce(d.p, d.p, 64, ncclFloat32, ncclSum, comm.c, stream.s), comm.c);
    cuda_ok(cudaStreamSynchronize(stream.s));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}
