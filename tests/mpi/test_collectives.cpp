// Every collective of MpiCommunicator, blocking and asynchronous, on every rank of the job:
// sizes 0, 1, 1001 and 1<<20, every dtype, every reduction, checked against the exact result.
#include <catch2/catch.hpp>
#include <sstream>

#include "mpi_test_util.hpp"

using namespace test_util;
using trident::ReduceOp;

namespace {

const size_t kSizes[] = {0, 1, 1001, size_t{1} << 20};

// Per-rank counts for reduce_scatter and all_gather: the largest makes 1<<20 elements in all.
std::vector<size_t> block_sizes(int ranks) {
  return {0, 1, 1001, (size_t{1} << 20) / static_cast<size_t>(ranks)};
}

double reduce_expected(ReduceOp op, int size, size_t i) {
  double acc = op == ReduceOp::Max ? -1e300 : op == ReduceOp::Min ? 1e300 : 0;
  for (int r = 0; r < size; ++r) {
    const double v = pattern(r, i);
    if (op == ReduceOp::Max)
      acc = std::max(acc, v);
    else if (op == ReduceOp::Min)
      acc = std::min(acc, v);
    else
      acc += v;
  }
  return op == ReduceOp::Avg ? acc / size : acc;
}

std::vector<ReduceOp> ops_for(DType t) {
  if (trident::dtype_is_floating(t))
    return {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Avg};
  return {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
}

// Counts elements of `buf` that differ from expected(i); describes the first in `first`.
template <typename F>
size_t mismatches(const Buffer& buf, size_t n, F expected, std::string& first) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double want = expected(i);
    const double got = buf.get(i);
    if (std::fabs(got - want) > tolerance(buf.dtype, want)) {
      if (bad++ == 0) {
        std::ostringstream os;
        os << "element " << i << ": got " << got << ", expected " << want;
        first = os.str();
      }
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("rank and size match MPI's world", "[mpi]") {
  auto world = make_world();
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(world->rank() == rank);
  CHECK(world->size() == size);
  CHECK(world->name() == "world");
  CHECK(world->timeout() == std::chrono::seconds(60));
}

TEST_CASE("all_reduce: every size, dtype and op, blocking and async", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  for (size_t n : kSizes) {
    for (DType t : all_dtypes()) {
      for (ReduceOp op : ops_for(t)) {
        for (bool async : {false, true}) {
          INFO("rank " << rank << ": all_reduce of " << n << " " << trident::dtype_name(t) << " "
                       << trident::reduce_op_name(op) << (async ? " async" : " blocking"));
          Buffer buf(t, n);
          for (size_t i = 0; i < n; ++i) buf.set(i, pattern(rank, i));
          if (async) {
            auto work = world->all_reduce_async(buf.data(), n, t, op);
            work->wait();
            CHECK(work->test());
          } else {
            world->all_reduce(buf.data(), n, t, op);
          }
          std::string first;
          CHECK(mismatches(
                    buf, n, [&](size_t i) { return reduce_expected(op, size, i); }, first) == 0);
          INFO(first);
        }
      }
    }
  }
}

TEST_CASE("reduce_scatter: every size, dtype and op, blocking and async", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  for (size_t n : block_sizes(size)) {
    for (DType t : all_dtypes()) {
      for (ReduceOp op : ops_for(t)) {
        for (bool async : {false, true}) {
          INFO("rank " << rank << ": reduce_scatter of " << n << " " << trident::dtype_name(t)
                       << " " << trident::reduce_op_name(op) << (async ? " async" : ""));
          Buffer send(t, n * size), recv(t, n);
          for (size_t i = 0; i < n * size; ++i) send.set(i, pattern(rank, i));
          if (async)
            world->reduce_scatter_async(send.data(), recv.data(), n, t, op)->wait();
          else
            world->reduce_scatter(send.data(), recv.data(), n, t, op);
          std::string first;
          const size_t offset = n * static_cast<size_t>(rank);  // this rank's block
          CHECK(mismatches(
                    recv, n, [&](size_t i) { return reduce_expected(op, size, offset + i); },
                    first) == 0);
          INFO(first);
        }
      }
    }
  }
}

TEST_CASE("all_gather: every size and dtype, blocking, async and in place", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  for (size_t n : block_sizes(size)) {
    for (DType t : all_dtypes()) {
      for (int mode : {0, 1, 2}) {  // blocking, async, in place
        INFO("rank " << rank << ": all_gather of " << n << " " << trident::dtype_name(t) << " mode "
                     << mode);
        Buffer send(t, n), recv(t, n * size);
        for (size_t i = 0; i < n; ++i) send.set(i, pattern(rank, i) + rank);
        if (mode == 2) {
          for (size_t i = 0; i < n; ++i) recv.set(rank * n + i, pattern(rank, i) + rank);
          const void* own = static_cast<char*>(recv.data()) + rank * n * trident::dtype_size(t);
          world->all_gather(own, recv.data(), n, t);
        } else if (mode == 1) {
          world->all_gather_async(send.data(), recv.data(), n, t)->wait();
        } else {
          world->all_gather(send.data(), recv.data(), n, t);
        }
        std::string first;
        CHECK(mismatches(
                  recv, n * size,
                  [&](size_t i) {
                    const int r = static_cast<int>(i / n);
                    return pattern(r, i % n) + r;
                  },
                  first) == 0);
        INFO(first);
      }
    }
  }
}

TEST_CASE("broadcast: every root, size and dtype, blocking and async", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  for (int root = 0; root < size; ++root) {
    for (size_t n : kSizes) {
      for (DType t : all_dtypes()) {
        const bool async = (root + n) % 2 == 1;
        INFO("rank " << rank << ": broadcast of " << n << " " << trident::dtype_name(t) << " from "
                     << root);
        Buffer buf(t, n);
        for (size_t i = 0; i < n; ++i) buf.set(i, rank == root ? pattern(root, i) : 0);
        if (async)
          world->broadcast_async(buf.data(), n, t, root)->wait();
        else
          world->broadcast(buf.data(), n, t, root);
        std::string first;
        CHECK(mismatches(
                  buf, n, [&](size_t i) { return pattern(root, i); }, first) == 0);
        INFO(first);
      }
    }
  }
}

TEST_CASE("send/recv around a ring, asynchronous and blocking", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  for (size_t n : kSizes) {
    for (DType t : all_dtypes()) {
      INFO("rank " << rank << ": ring of " << n << " " << trident::dtype_name(t));
      Buffer out(t, n), in(t, n), in_blocking(t, n);
      for (size_t i = 0; i < n; ++i) out.set(i, pattern(rank, i));
      // Asynchronous: both posted, then waited.
      auto r = world->recv_async(in.data(), n, t, prev, 7);
      auto s = world->send_async(out.data(), n, t, next, 7);
      s->wait();
      r->wait();
      // Blocking: even ranks send first, odd ranks receive first.
      if (rank % 2 == 0) {
        world->send(out.data(), n, t, next);
        world->recv(in_blocking.data(), n, t, prev);
      } else {
        world->recv(in_blocking.data(), n, t, prev);
        world->send(out.data(), n, t, next);
      }
      std::string first;
      CHECK(mismatches(
                in, n, [&](size_t i) { return pattern(prev, i); }, first) == 0);
      CHECK(mismatches(
                in_blocking, n, [&](size_t i) { return pattern(prev, i); }, first) == 0);
      INFO(first);
    }
  }
}

TEST_CASE("messages with different tags are matched by tag", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  std::vector<int32_t> a(5, 100 + rank), b(3, 200 + rank), got_a(5), got_b(3);
  // Receive tag 2 first although tag 1 is sent first.
  auto rb = world->recv_async(got_b.data(), 3, DType::I32, prev, 2);
  auto ra = world->recv_async(got_a.data(), 5, DType::I32, prev, 1);
  auto sa = world->send_async(a.data(), 5, DType::I32, next, 1);
  auto sb = world->send_async(b.data(), 3, DType::I32, next, 2);
  for (auto& w : {rb, ra, sa, sb}) w->wait();
  CHECK(got_a == std::vector<int32_t>(5, 100 + prev));
  CHECK(got_b == std::vector<int32_t>(3, 200 + prev));
}

TEST_CASE("a recv that gets fewer elements than asked fails with the operation named", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  std::vector<float> out(10, 1.0f), in(20);
  auto r = world->recv_async(in.data(), 20, DType::F32, (rank + size - 1) % size, 3);
  world->send(out.data(), 10, DType::F32, (rank + 1) % size, 3);
  CHECK_THROWS_WITH(r->wait(), Catch::Contains("recv of 20 f32 from rank") &&
                                   Catch::Contains("communicator 'world'") &&
                                   Catch::Contains("received 10 elements, expected 20"));
  CHECK(r->test());
  CHECK_THROWS_AS(r->wait(), trident::Error);  // the failure is kept
  world->barrier();
}

TEST_CASE("barrier, blocking and async", "[mpi]") {
  auto world = make_world();
  world->barrier();
  auto w = world->barrier_async();
  w->wait();
  CHECK(w->test());
  CHECK(w->description() == "barrier");
}

TEST_CASE("many asynchronous operations in flight, waited in order", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  const int kOps = 64;
  const size_t n = 1001;
  std::vector<std::vector<double>> reduced(kOps, std::vector<double>(n));
  std::vector<std::vector<int64_t>> gathered(kOps, std::vector<int64_t>(n * size));
  std::vector<std::vector<int64_t>> own(kOps, std::vector<int64_t>(n));
  std::vector<std::shared_ptr<trident::Work>> works;
  for (int k = 0; k < kOps; ++k) {
    for (size_t i = 0; i < n; ++i) {
      reduced[k][i] = k + rank * 0.5 + static_cast<double>(i);
      own[k][i] = k * 1000 + rank;
    }
    works.push_back(world->all_reduce_async(reduced[k].data(), n, DType::F64, ReduceOp::Sum));
    works.push_back(world->all_gather_async(own[k].data(), gathered[k].data(), n, DType::I64));
  }
  CHECK(works[0]->description() == "all_reduce of 1001 f64 (sum)");
  CHECK(works[1]->description() == "all_gather of 1001 i64 per rank");
  for (auto& w : works) w->wait();
  double rank_sum = 0;
  for (int r = 0; r < size; ++r) rank_sum += r * 0.5;
  size_t bad = 0;
  for (int k = 0; k < kOps; ++k) {
    for (size_t i = 0; i < n; ++i) {
      if (reduced[k][i] != size * (k + static_cast<double>(i)) + rank_sum) ++bad;
      for (int r = 0; r < size; ++r)
        if (gathered[k][r * n + i] != k * 1000 + r) ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("a blocking call is ordered after the asynchronous calls before it", "[mpi]") {
  auto world = make_world();
  std::vector<float> big(size_t{1} << 20, 1.0f);
  float small = 1.0f;
  auto first = world->all_reduce_async(big.data(), big.size(), DType::F32, ReduceOp::Sum);
  world->all_reduce(&small, 1, DType::F32, ReduceOp::Sum);
  CHECK(first->test());  // FIFO: the earlier operation finished before the blocking one
  CHECK(small == static_cast<float>(world->size()));
  CHECK(big[12345] == static_cast<float>(world->size()));
}

TEST_CASE("bf16 and f16 reductions are summed in f32 and rounded once, to nearest even", "[mpi]") {
  auto world = make_world();
  const int size = world->size();
  // Rank 0 gives 1, every other rank a quarter of the type's spacing at 1 (2^-7 for bf16,
  // 2^-10 for f16). Summed in f32 and rounded once: 1 + round_even((size-1)/4) spacings.
  // Summed in the 16-bit type pairwise, every quarter would be lost.
  const double rounded = std::nearbyint((size - 1) / 4.0);
  for (DType t : {DType::BF16, DType::F16}) {
    const double spacing = t == DType::BF16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -10);
    Buffer v(t, 1);
    v.set(0, world->rank() == 0 ? 1.0 : spacing / 4);
    world->all_reduce(v.data(), 1, t, ReduceOp::Sum);
    CHECK(v.get(0) == 1.0 + rounded * spacing);
  }
}

TEST_CASE("invalid arguments are refused before any MPI call", "[mpi]") {
  auto world = make_world();
  const int size = world->size();
  float x = 0;
  const size_t too_many = size_t{1} << 31;
  CHECK_THROWS_WITH(world->all_reduce_async(nullptr, too_many, DType::F32, ReduceOp::Sum),
                    Catch::Contains("2147483648 elements exceed INT_MAX") &&
                        Catch::Contains("all_reduce of 2147483648 f32"));
  CHECK_THROWS_WITH(world->all_gather_async(nullptr, nullptr, too_many / 2, DType::U8),
                    Catch::Contains("exceed INT_MAX"));
  CHECK_THROWS_WITH(world->all_reduce_async(&x, 1, DType::I32, ReduceOp::Avg),
                    Catch::Contains("avg of integers is not supported"));
  CHECK_THROWS_WITH(world->broadcast_async(&x, 1, DType::F32, size),
                    Catch::Contains("root " + std::to_string(size) + " is not a rank"));
  CHECK_THROWS_WITH(world->send_async(&x, 1, DType::F32, -1),
                    Catch::Contains("destination -1 is not a rank"));
  CHECK_THROWS_WITH(world->recv_async(&x, 1, DType::F32, 0, -5),
                    Catch::Contains("tag must be in 0.."));
  CHECK_THROWS_WITH(world->split(-1, 0, "bad"), Catch::Contains("color must be >= 0"));
  world->barrier();  // still usable
}
