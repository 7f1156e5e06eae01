// Data parallelism and memory over NCCL on one rank: a bucket's all-reduce launched during
// backward does not hold the compute stream until the gradients are consumed in finish(); the
// time the compute stream then stands waiting is the exposed communication time (events, not
// the host, which never blocks); and a tensor freed while a collective on it is still queued is
// not handed out again before the collective completed (the allocator's stream rule).
#if defined(TRIDENT_WITH_NCCL)
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "gpu_test_util.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/ops.hpp"
#include "trident/parallel/data_parallel.hpp"
#include "trident/parallel/nccl_communicator.hpp"

using trident::DataParallelOptions;
using trident::DataParallelReducer;
using trident::Device;
using trident::NcclCommunicator;
using trident::Tensor;

namespace {

using Clock = std::chrono::steady_clock;

struct NcclFixture {
  std::unique_ptr<trident::MpiCommunicator> mpi = test_util::make_world();
  std::unique_ptr<NcclCommunicator> nccl;
  NcclFixture() {
    gpu_test::check(cudaSetDevice(0), "cudaSetDevice");
    nccl = NcclCommunicator::create(*mpi, 0);
    nccl->set_timeout(std::chrono::seconds(60));
  }
};

void set_flag(void* flag) {
  static_cast<std::atomic<bool>*>(flag)->store(true);
}

// True when `flag` is set within `seconds`.
bool becomes_true(const std::atomic<bool>& flag, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (!flag.load() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return flag.load();
}

}  // namespace

TEST_CASE(
    "NCCL data parallel: a bucket launched in backward leaves the compute stream free "
    "until finish(), and finish()'s stall is the exposed time",
    "[nccl]") {
  NcclFixture f;
  const Device gpu = Device::cuda(0);
  Tensor w = Tensor::ones({4096}, trident::DType::F32, gpu).requires_grad_(true);
  DataParallelOptions opts;
  opts.broadcast_parameters = false;
  opts.collectives_on_one_rank = true;  // the all-reduce is what this test times
  DataParallelReducer reducer({{"w", w}}, *f.nccl, opts);
  const cudaStream_t compute = gpu_test::compute_stream();

  reducer.prepare(true);
  Tensor loss = trident::ops::sum(trident::ops::mul(w, w));
  gpu_test::StreamGate gate(f.nccl->stream());  // the collective cannot run until released
  loss.backward();                              // the hook launches the only bucket
  REQUIRE(reducer.buckets_launched_in_backward() == 1);
  // Give any waiting thread time to act: nothing may make the compute stream wait for the
  // all-reduce before its gradients are consumed.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::atomic<bool> ran{false};
  gpu_test::check(cudaLaunchHostFunc(compute, set_flag, &ran), "cudaLaunchHostFunc");
  CHECK(becomes_true(ran, 5.0));

  const auto t0 = Clock::now();
  reducer.finish();  // orders the compute stream after the bucket; does not block the host
  CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 0.1);
  std::atomic<bool> after{false};
  gpu_test::check(cudaLaunchHostFunc(compute, set_flag, &after), "cudaLaunchHostFunc");
  CHECK_FALSE(becomes_true(after, 0.3));  // the optimizer's kernels would wait here
  gate.release();
  CHECK(becomes_true(after, 10.0));
  // The compute stream stood about 0.3 s at finish(); the host did not.
  const double exposed = reducer.exposed_comm_seconds();
  INFO("exposed " << exposed << " s, comm " << reducer.comm_seconds() << " s");
  CHECK(exposed >= 0.25);
  CHECK(exposed < 10);
  CHECK(reducer.comm_seconds() >= 0);
  // All-reduce (avg) on one rank leaves d(sum w^2)/dw = 2w.
  const std::vector<float> g = w.grad().to_vector<float>();
  CHECK(g.front() == 2.0f);
  CHECK(g.back() == 2.0f);
}

TEST_CASE(
    "NCCL: a tensor freed while its collective is queued is not reused before the "
    "collective completes",
    "[nccl]") {
  NcclFixture f;
  const Device gpu = Device::cuda(0);
  trident::Allocator& alloc = trident::allocator_for(gpu);
  const int64_t n = 3 << 18;  // a size no other test allocates
  std::shared_ptr<trident::Work> work;
  const void* freed = nullptr;
  {
    gpu_test::StreamGate gate(f.nccl->stream());
    {
      Tensor t = Tensor::zeros({n}, trident::DType::F32, gpu);
      freed = t.raw_data();
      work = f.nccl->all_reduce_async(t.raw_data(), static_cast<size_t>(n), trident::DType::F32,
                                      trident::ReduceOp::Sum);
      work->wait();  // orders the compute stream only; the collective is still queued
    }                // t's block goes back to the allocator here
    Tensor u = Tensor::empty({n}, trident::DType::F32, gpu);
    CHECK(u.raw_data() != freed);  // would be written while NCCL still reads and writes it
    gate.release();
    NcclCommunicator::synchronize(work);
  }
  // Once the collective completed, the next allocation polls its event and the block is free
  // again: no new cudaMalloc for a block of that size.
  const uint64_t allocs = alloc.stats().system_allocs;
  Tensor v = Tensor::empty({n}, trident::DType::F32, gpu);
  Tensor x = Tensor::empty({n}, trident::DType::F32, gpu);
  CHECK(alloc.stats().system_allocs == allocs);
}
#endif  // TRIDENT_WITH_NCCL
