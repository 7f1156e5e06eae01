// Communicators split from a Topology: each axis reduces over exactly its group's ranks,
// pipeline neighbours exchange over pp, and axes work concurrently.
#include <catch2/catch.hpp>
#include <numeric>

#include "mpi_test_util.hpp"

using namespace test_util;
using trident::ParallelLayout;
using trident::ProcessGroups;
using trident::ReduceOp;
using trident::Topology;

namespace {

// Every (dp, tp, pp) whose product is the world size.
std::vector<ParallelLayout> layouts_of(int world) {
  std::vector<ParallelLayout> out;
  for (int tp = 1; tp <= world; ++tp)
    for (int pp = 1; pp <= world; ++pp)
      if (world % (tp * pp) == 0) out.push_back(trident::resolve_layout(world, 0, tp, pp));
  return out;
}

int64_t sum_of(const std::vector<int>& ranks) {
  return std::accumulate(ranks.begin(), ranks.end(), int64_t{0});
}

}  // namespace

TEST_CASE("split by color and key", "[mpi]") {
  auto world = make_world();
  const int rank = world->rank(), size = world->size();
  // Reverse order within even and odd ranks.
  auto half = world->split(rank % 2, size - rank, "parity");
  CHECK(half->name() == "parity");
  CHECK(half->size() == (size + 1 - rank % 2) / 2);
  int64_t v = rank;
  half->all_reduce(&v, 1, DType::I64, ReduceOp::Sum);
  int64_t expected = 0;
  for (int r = rank % 2; r < size; r += 2) expected += r;
  CHECK(v == expected);
  // Key order: the highest world rank of the parity class is rank 0 of the split.
  int64_t top = rank;
  half->broadcast(&top, 1, DType::I64, 0);
  CHECK(top == ((size - 1) % 2 == rank % 2 ? size - 1 : size - 2));
}

TEST_CASE("all_reduce within each axis sums only that axis's ranks, for every layout", "[mpi]") {
  auto world = make_world();
  for (const ParallelLayout& l : layouts_of(world->size())) {
    const Topology topo(world->rank(), world->size(), l);
    INFO(topo.describe() << " in layout dp " << l.dp << " tp " << l.tp << " pp " << l.pp);
    ProcessGroups groups(*world, topo);
    groups.set_timeout(std::chrono::seconds(60));
    CHECK(groups.tp().rank() == topo.tp_rank());
    CHECK(groups.dp().rank() == topo.dp_rank());
    CHECK(groups.pp().rank() == topo.pp_rank());
    CHECK(groups.tp().size() == l.tp);
    CHECK(groups.dp().name() == "dp");

    int64_t tp = topo.world_rank(), dp = topo.world_rank(), pp = topo.world_rank();
    groups.tp().all_reduce(&tp, 1, DType::I64, ReduceOp::Sum);
    groups.dp().all_reduce(&dp, 1, DType::I64, ReduceOp::Sum);
    groups.pp().all_reduce(&pp, 1, DType::I64, ReduceOp::Sum);
    CHECK(tp == sum_of(topo.tp_group()));
    CHECK(dp == sum_of(topo.dp_group()));
    CHECK(pp == sum_of(topo.pp_group()));
  }
}

// [np4]: run only by the 4-rank ctest entry (the others exclude it: not a pass where it cannot
// run).
TEST_CASE("dp=2 tp=2 on 4 ranks: tp groups {0,1} {2,3}, dp groups {0,2} {1,3}", "[mpi][np4]") {
  auto world = make_world();
  REQUIRE(world->size() == 4);  // this layout needs exactly 4 ranks
  const Topology topo(world->rank(), 4, ParallelLayout{2, 2, 1});
  ProcessGroups groups(*world, topo);
  std::vector<float> x(1001, static_cast<float>(1 << world->rank()));  // bit r marks rank r
  auto tp_work = groups.tp().all_reduce_async(x.data(), x.size(), DType::F32, ReduceOp::Sum);
  tp_work->wait();
  const int r = world->rank();
  CHECK(x[1000] == static_cast<float>(r < 2 ? 0b0011 : 0b1100));
  std::vector<float> y(7, static_cast<float>(1 << r));
  groups.dp().all_reduce(y.data(), y.size(), DType::F32, ReduceOp::Sum);
  CHECK(y[3] == static_cast<float>(r % 2 == 0 ? 0b0101 : 0b1010));
}

TEST_CASE("pipeline neighbours exchange over pp; axes run concurrently", "[mpi]") {
  auto world = make_world();
  const int size = world->size();
  const int pp_size = size % 2 == 0 ? 2 : size;  // 2 stages, or every rank a stage
  const Topology topo(world->rank(), size, trident::resolve_layout(size, 0, 1, pp_size));
  ProcessGroups groups(*world, topo);
  std::vector<double> activation(size_t{1} << 16, topo.world_rank() + 0.25), got(activation.size());
  // Asynchronous dp all-reduce in flight while the pipeline exchanges.
  std::vector<double> grad(4097, 1.0);
  auto grad_work =
      groups.dp().all_reduce_async(grad.data(), grad.size(), DType::F64, ReduceOp::Avg);
  std::shared_ptr<trident::Work> to_next, from_prev;
  if (!topo.is_last_stage())
    to_next = groups.pp().send_async(activation.data(), activation.size(), DType::F64,
                                     topo.pp_rank() + 1);
  if (!topo.is_first_stage())
    from_prev = groups.pp().recv_async(got.data(), got.size(), DType::F64, topo.pp_rank() - 1);
  if (to_next) to_next->wait();
  if (from_prev) {
    from_prev->wait();
    CHECK(got.back() == topo.prev_pipeline_rank() + 0.25);
  }
  grad_work->wait();
  CHECK(grad[4096] == 1.0);
}
