// The NCCL communicator on one rank and one GPU: every operation and dtype, the ordering with
// the compute stream (a collective sees the kernels queued before it; wait() orders later ones
// after it without blocking the host), groups, the host-buffer path, splits, the factory, and
// a timeout that aborts the communicator and names the rank, communicator and operation.
#if defined(TRIDENT_WITH_NCCL)
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>

#include "gpu_test_util.hpp"
#include "trident/core/cuda.hpp"
#include "trident/parallel/nccl_communicator.hpp"
#include "trident/parallel/process_group_factory.hpp"

using namespace test_util;
using gpu_test::DeviceArray;
using gpu_test::PinnedArray;
using trident::CollectiveTimeout;
using trident::NcclCommunicator;
using trident::ReduceOp;

namespace {

constexpr size_t kCount = 4099;  // not a multiple of any vector width

Buffer pattern_buffer(DType t, size_t n, int seed) {
  Buffer b(t, n);
  for (size_t i = 0; i < n; ++i) b.set(i, pattern(seed, i));
  return b;
}

void check_equal(const Buffer& got, const Buffer& want) {
  REQUIRE(got.count == want.count);
  size_t bad = 0;
  for (size_t i = 0; i < got.count; ++i) bad += got.get(i) != want.get(i) ? 1 : 0;
  INFO("dtype " << trident::dtype_name(got.dtype) << ", first element " << got.get(0)
                << " expected " << want.get(0));
  CHECK(bad == 0);
}

struct Fixture {
  std::unique_ptr<trident::MpiCommunicator> mpi = make_world();
  std::unique_ptr<NcclCommunicator> nccl;
  Fixture() {
    gpu_test::check(cudaSetDevice(0), "cudaSetDevice");
    nccl = NcclCommunicator::create(*mpi, 0);
    nccl->set_timeout(std::chrono::seconds(60));
  }
};

}  // namespace

TEST_CASE(
    "NCCL: one rank, every dtype through all_reduce, reduce_scatter, all_gather and "
    "broadcast",
    "[nccl]") {
  Fixture f;
  CHECK(f.nccl->size() == 1);
  CHECK(f.nccl->rank() == 0);
  CHECK(f.nccl->name() == "world");
  for (DType t : all_dtypes()) {
    INFO("dtype " << trident::dtype_name(t));
    const size_t bytes = kCount * trident::dtype_size(t);
    const Buffer in = pattern_buffer(t, kCount, 1);
    std::vector<ReduceOp> ops{ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
    if (trident::dtype_is_floating(t)) ops.push_back(ReduceOp::Avg);
    for (ReduceOp op : ops) {
      INFO("op " << trident::reduce_op_name(op));
      DeviceArray d(bytes);
      d.upload(in);
      f.nccl->all_reduce(d.get(), kCount, t, op);
      Buffer out(t, kCount);
      d.download(out);
      check_equal(out, in);
    }
    {
      DeviceArray send(bytes), recv(bytes);
      send.upload(in);
      f.nccl->reduce_scatter(send.get(), recv.get(), kCount, t, ReduceOp::Sum);
      Buffer out(t, kCount);
      recv.download(out);
      check_equal(out, in);
    }
    {
      DeviceArray send(bytes), recv(bytes);
      send.upload(in);
      f.nccl->all_gather(send.get(), recv.get(), kCount, t);
      Buffer out(t, kCount);
      recv.download(out);
      check_equal(out, in);
      // In place: the rank's own block of recv is the send buffer.
      f.nccl->all_gather(recv.get(), recv.get(), kCount, t);
      recv.download(out);
      check_equal(out, in);
    }
    {
      DeviceArray d(bytes);
      d.upload(in);
      f.nccl->broadcast(d.get(), kCount, t, 0);
      Buffer out(t, kCount);
      d.download(out);
      check_equal(out, in);
    }
  }
}

TEST_CASE(
    "NCCL: collectives issued while the compute stream is captured become graph nodes that run "
    "at each launch",
    "[nccl]") {
  // As the training step under --cuda-graphs issues them: an asynchronous all-gather waited on
  // (the reducer's buckets) and a blocking all-reduce (the tensor-parallel layers). Neither may
  // make the host wait or query a captured event, or the capture fails.
  Fixture f;
  const auto compute = static_cast<cudaStream_t>(trident::cuda_compute_stream(0));
  constexpr size_t n = 1000;
  DeviceArray send(n * 4), recv(n * 4);
  gpu_test::check(cudaStreamBeginCapture(compute, cudaStreamCaptureModeGlobal), "begin capture");
  const auto work = f.nccl->all_gather_async(send.get(), recv.get(), n, DType::F32);
  work->wait();
  f.nccl->all_reduce(recv.get(), n, DType::F32, ReduceOp::Max);
  work->synchronize();  // nothing for the host to wait for: returns
  CHECK(work->test());
  CHECK(work->run_seconds() < 0);
  CHECK(work->stall_seconds() < 0);
  // The watchdog has had time to poll (it would query the captured events, and fail them).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  cudaGraph_t graph = nullptr;
  gpu_test::check(cudaStreamEndCapture(compute, &graph), "end capture");
  cudaGraphExec_t exec = nullptr;
  gpu_test::check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (int launch = 1; launch <= 2; ++launch) {
    INFO("launch " << launch);
    const Buffer in = pattern_buffer(DType::F32, n, 10 + launch);
    send.upload(in);
    gpu_test::check(cudaGraphLaunch(exec, compute), "cudaGraphLaunch");
    gpu_test::check(cudaStreamSynchronize(compute), "cudaStreamSynchronize");
    Buffer out(DType::F32, n);
    recv.download(out);
    check_equal(out, in);
  }
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);
  // Eager work afterwards is tracked again (its completion comes from the watchdog).
  const auto eager = f.nccl->all_reduce_async(recv.get(), n, DType::F32, ReduceOp::Sum);
  eager->synchronize();
  CHECK(eager->run_seconds() >= 0);
}

TEST_CASE("NCCL: bad arguments are refused with the rank, communicator and operation", "[nccl]") {
  Fixture f;
  DeviceArray d(64);
  REQUIRE_THROWS_WITH(f.nccl->all_reduce_async(d.get(), 4, DType::I32, ReduceOp::Avg),
                      Catch::Contains("avg of integers") && Catch::Contains("'world'"));
  REQUIRE_THROWS_WITH(f.nccl->broadcast_async(d.get(), 4, DType::F32, 1),
                      Catch::Contains("root 1 is not a rank"));
  std::vector<float> host(4);
  DeviceArray recv(64);
  REQUIRE_THROWS_WITH(
      f.nccl->reduce_scatter_async(host.data(), recv.get(), 4, DType::F32, ReduceOp::Sum),
      Catch::Contains("some buffers are device memory and some host memory"));
}

TEST_CASE(
    "NCCL: a collective sees the compute stream's earlier work, and wait() orders later "
    "work after it without blocking the host",
    "[nccl]") {
  Fixture f;
  const cudaStream_t compute = gpu_test::compute_stream();
  const size_t n = size_t{1} << 20;
  const Buffer want = pattern_buffer(DType::F32, n, 3);
  PinnedArray staged(n * sizeof(float)), back(n * sizeof(float));
  std::memcpy(staged.get(), want.bytes.data(), n * sizeof(float));
  DeviceArray send(n * sizeof(float)), recv(n * sizeof(float));
  // The send buffer is written on the compute stream 50 ms late; the collective must wait.
  gpu_test::delay_stream(compute);
  gpu_test::check(
      cudaMemcpyAsync(send.get(), staged.get(), n * sizeof(float), cudaMemcpyHostToDevice, compute),
      "cudaMemcpyAsync");
  auto work = f.nccl->reduce_scatter_async(send.get(), recv.get(), n, DType::F32, ReduceOp::Sum);
  work->wait();
  gpu_test::check(
      cudaMemcpyAsync(back.get(), recv.get(), n * sizeof(float), cudaMemcpyDeviceToHost, compute),
      "cudaMemcpyAsync");
  gpu_test::check(cudaStreamSynchronize(compute), "cudaStreamSynchronize");
  CHECK(work->test());
  CHECK(std::memcmp(back.get(), want.bytes.data(), n * sizeof(float)) == 0);

  // wait() returns while the compute stream (and so the collective) is still held.
  DeviceArray d(n * sizeof(float));
  {
    gpu_test::StreamGate gate(compute);
    auto held = f.nccl->all_reduce_async(d.get(), n, DType::F32, ReduceOp::Sum);
    held->wait();
    CHECK_FALSE(held->test());
    gate.release();
    NcclCommunicator::synchronize(held);
    CHECK(held->test());
  }
}

TEST_CASE("NCCL: a send to oneself and its receive in one group; barrier", "[nccl]") {
  Fixture f;
  const Buffer in = pattern_buffer(DType::BF16, kCount, 5);
  DeviceArray send(kCount * 2), recv(kCount * 2);
  send.upload(in);
  f.nccl->group_start();
  auto s = f.nccl->send_async(send.get(), kCount, DType::BF16, 0, 7);
  auto r = f.nccl->recv_async(recv.get(), kCount, DType::BF16, 0, 7);
  REQUIRE_THROWS_WITH(r->wait(), Catch::Contains("call group_end() first"));
  f.nccl->group_end();
  s->wait();
  r->wait();
  Buffer out(DType::BF16, kCount);
  recv.download(out);
  check_equal(out, in);
  auto b = f.nccl->barrier_async();
  NcclCommunicator::synchronize(b);
  CHECK(b->test());
  f.nccl->barrier();
}

TEST_CASE("NCCL: host buffers go through the MPI communicator of the group", "[nccl]") {
  Fixture f;
  double loss = 2.5;
  f.nccl->all_reduce(&loss, 1, DType::F64, ReduceOp::Avg);
  CHECK(loss == 2.5);
  int32_t flags[2] = {3, 4};
  f.nccl->broadcast(flags, 2, DType::I32, 0);
  CHECK(flags[1] == 4);
}

TEST_CASE("NCCL: split keeps colour members and returns null for no colour", "[nccl]") {
  Fixture f;
  auto mpi_sub = f.mpi->split(0, 0, "sub");
  auto sub = f.nccl->split(0, 0, mpi_sub.get());
  REQUIRE(sub != nullptr);
  CHECK(sub->name() == "sub");
  CHECK(sub->size() == 1);
  CHECK(sub->timeout() == f.nccl->timeout());
  const Buffer in = pattern_buffer(DType::F32, kCount, 2);
  DeviceArray d(kCount * 4);
  d.upload(in);
  sub->all_reduce(d.get(), kCount, DType::F32, ReduceOp::Sum);
  Buffer out(DType::F32, kCount);
  d.download(out);
  check_equal(out, in);
  CHECK(f.nccl->split(-1, 0, nullptr) == nullptr);
}

TEST_CASE("NCCL: the factory picks NCCL for cuda and MPI for the CPU", "[nccl]") {
  auto world = make_world();
  const trident::Topology topo(0, 1, trident::ParallelLayout{});
  auto gpu = trident::make_comm_groups(*world, topo, trident::Device::cuda(0));
  CHECK(gpu->backend() == trident::CommBackend::Nccl);
  CHECK(dynamic_cast<NcclCommunicator*>(&gpu->dp()) != nullptr);
  CHECK(gpu->tp().name() == "tp");
  CHECK(gpu->pp().name() == "pp");
  CHECK(gpu->embedding() == nullptr);
  const Buffer in = pattern_buffer(DType::F32, kCount, 4);
  DeviceArray d(kCount * 4);
  d.upload(in);
  gpu->dp().all_reduce(d.get(), kCount, DType::F32, ReduceOp::Avg);
  Buffer out(DType::F32, kCount);
  d.download(out);
  check_equal(out, in);
  auto cpu = trident::make_comm_groups(*world, topo, trident::Device::cpu());
  CHECK(cpu->backend() == trident::CommBackend::Mpi);
  CHECK(dynamic_cast<trident::MpiCommunicator*>(&cpu->dp()) != nullptr);
  // --comm mpi on a GPU: MPI with device-buffer staging.
  auto staged = trident::make_comm_groups(*world, topo, trident::Device::cuda(0), "mpi");
  CHECK(staged->backend() == trident::CommBackend::Mpi);
}

TEST_CASE(
    "NCCL: a collective stuck behind the compute stream times out, naming the rank, "
    "communicator and operation, and aborts the communicator",
    "[nccl]") {
  Fixture f;
  f.nccl->set_timeout(std::chrono::milliseconds(500));
  f.nccl->set_abort_job_on_timeout(false);
  DeviceArray d(4096 * 4);
  gpu_test::StreamGate gate(gpu_test::compute_stream());
  auto work = f.nccl->all_reduce_async(d.get(), 4096, DType::F32, ReduceOp::Sum);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(NcclCommunicator::synchronize(work), CollectiveTimeout);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(waited >= 0.45);
  CHECK(waited < 10);
  REQUIRE_THROWS_WITH(work->wait(), Catch::Contains("rank 0: all_reduce of 4096 f32 (sum) on "
                                                    "communicator 'world' (rank 0 of 1) did not "
                                                    "finish within 0.5 s"));
  CHECK(work->test());  // finished, unsuccessfully
  gate.release();
  REQUIRE_THROWS_WITH(f.nccl->all_reduce_async(d.get(), 4096, DType::F32, ReduceOp::Sum),
                      Catch::Contains("was aborted"));
}
#endif  // TRIDENT_WITH_NCCL
