// MpiCommunicator given device buffers: staged through pinned host memory, so ranks sharing
// one GPU (mpirun -np 2 on one card) reduce, scatter, gather, broadcast and exchange device
// memory with the same results as host memory, after the compute stream's earlier work.
#include <catch2/catch.hpp>
#include <cstring>

#include "gpu_test_util.hpp"

using namespace test_util;
using gpu_test::DeviceArray;
using trident::ReduceOp;

namespace {

constexpr size_t kCount = 1031;

void check_close(const Buffer& got, const std::vector<double>& want) {
  REQUIRE(got.count == want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.count; ++i)
    bad += std::fabs(got.get(i) - want[i]) > tolerance(got.dtype, want[i]) ? 1 : 0;
  INFO("dtype " << trident::dtype_name(got.dtype) << ": element 0 is " << got.get(0)
                << ", expected " << want[0]);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("MPI staging: device buffers through every collective, every dtype", "[staging]") {
  gpu_test::check(cudaSetDevice(0), "cudaSetDevice");
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  const size_t n = kCount, total = n * static_cast<size_t>(size);
  for (DType t : all_dtypes()) {
    INFO("dtype " << trident::dtype_name(t) << ", rank " << rank << " of " << size);
    const size_t es = trident::dtype_size(t);
    {  // all_reduce (sum)
      Buffer in(t, n);
      for (size_t i = 0; i < n; ++i) in.set(i, pattern(rank, i));
      DeviceArray d(n * es);
      d.upload(in);
      world->all_reduce(d.get(), n, t, ReduceOp::Sum);
      std::vector<double> want(n, 0.0);
      for (int r = 0; r < size; ++r)
        for (size_t i = 0; i < n; ++i) want[i] += pattern(r, i);
      Buffer out(t, n);
      d.download(out);
      check_close(out, want);
    }
    {  // reduce_scatter (sum): block `rank` of every rank's send buffer
      Buffer in(t, total);
      for (size_t i = 0; i < total; ++i) in.set(i, pattern(rank, i));
      DeviceArray send(total * es), recv(n * es);
      send.upload(in);
      world->reduce_scatter(send.get(), recv.get(), n, t, ReduceOp::Sum);
      std::vector<double> want(n, 0.0);
      for (int r = 0; r < size; ++r)
        for (size_t i = 0; i < n; ++i) want[i] += pattern(r, static_cast<size_t>(rank) * n + i);
      Buffer out(t, n);
      recv.download(out);
      check_close(out, want);
    }
    {  // all_gather, out of place and in place
      Buffer in(t, n);
      for (size_t i = 0; i < n; ++i) in.set(i, pattern(rank, i));
      std::vector<double> want(total);
      for (int r = 0; r < size; ++r)
        for (size_t i = 0; i < n; ++i) want[static_cast<size_t>(r) * n + i] = pattern(r, i);
      DeviceArray send(n * es), recv(total * es);
      send.upload(in);
      world->all_gather(send.get(), recv.get(), n, t);
      Buffer out(t, total);
      recv.download(out);
      check_close(out, want);
      DeviceArray in_place(total * es);
      const size_t own_offset = static_cast<size_t>(rank) * n * es;
      char* own = static_cast<char*>(in_place.get()) + own_offset;
      in_place.upload_bytes(own_offset, in.bytes.data(), n * es);
      world->all_gather(own, in_place.get(), n, t);
      in_place.download(out);
      check_close(out, want);
    }
    {  // broadcast from the last rank
      Buffer in(t, n);
      for (size_t i = 0; i < n; ++i) in.set(i, pattern(rank, i));
      DeviceArray d(n * es);
      d.upload(in);
      world->broadcast(d.get(), n, t, size - 1);
      std::vector<double> want(n);
      for (size_t i = 0; i < n; ++i) want[i] = pattern(size - 1, i);
      Buffer out(t, n);
      d.download(out);
      check_close(out, want);
    }
  }
}

TEST_CASE("MPI staging: a ring of device send/recv posted asynchronously", "[staging]") {
  gpu_test::check(cudaSetDevice(0), "cudaSetDevice");
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  Buffer in(DType::F32, kCount);
  for (size_t i = 0; i < kCount; ++i) in.set(i, pattern(rank, i));
  DeviceArray send(kCount * 4), recv(kCount * 4);
  send.upload(in);
  auto r = world->recv_async(recv.get(), kCount, DType::F32, prev, 3);
  auto s = world->send_async(send.get(), kCount, DType::F32, next, 3);
  s->wait();
  r->wait();
  std::vector<double> want(kCount);
  for (size_t i = 0; i < kCount; ++i) want[i] = pattern(prev, i);
  Buffer out(DType::F32, kCount);
  recv.download(out);
  check_close(out, want);
}

TEST_CASE("MPI staging: the copy to the host waits for the compute stream's earlier work",
          "[staging]") {
  gpu_test::check(cudaSetDevice(0), "cudaSetDevice");
  auto world = make_world();
  const int size = world->size();
  const size_t n = size_t{1} << 18;
  gpu_test::PinnedArray ones(n * sizeof(float));
  std::vector<float> host(n, 1.0f);
  std::memcpy(ones.get(), host.data(), n * sizeof(float));
  DeviceArray d(n * sizeof(float));
  d.fill_zero();
  const cudaStream_t compute = gpu_test::compute_stream();
  gpu_test::delay_stream(compute);
  gpu_test::check(
      cudaMemcpyAsync(d.get(), ones.get(), n * sizeof(float), cudaMemcpyHostToDevice, compute),
      "cudaMemcpyAsync");
  world->all_reduce(d.get(), n, DType::F32, ReduceOp::Sum);
  Buffer out(DType::F32, n);
  d.download(out);
  check_close(out, std::vector<double>(n, static_cast<double>(size)));
}
