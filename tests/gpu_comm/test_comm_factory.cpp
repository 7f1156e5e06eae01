// CPU side of the GPU communication code, run in every build: the backend factory picks MPI
// for the CPU and refuses NCCL without a GPU; host buffers never take the device staging path;
// the pinned-block cache reuses, rounds and bounds its blocks.
#include <catch2/catch.hpp>
#include <map>

#include "device_staging.hpp"
#include "mpi_test_util.hpp"
#include "trident/parallel/process_group_factory.hpp"

using namespace test_util;
using trident::CommBackend;
using trident::Device;
using trident::detail::HostBlockCache;

TEST_CASE("comm backend names: mpi and nccl, anything else refused", "[mpi]") {
  CHECK(trident::parse_comm_backend("mpi") == CommBackend::Mpi);
  CHECK(trident::parse_comm_backend("nccl") == CommBackend::Nccl);
  CHECK(std::string(trident::comm_backend_name(CommBackend::Nccl)) == "nccl");
  REQUIRE_THROWS_WITH(trident::parse_comm_backend("gloo"),
                      Catch::Contains("--comm 'gloo'") && Catch::Contains("mpi or nccl"));
  CHECK(trident::resolve_comm_backend("", Device::cpu()) == CommBackend::Mpi);
  CHECK(trident::resolve_comm_backend("auto", Device::cpu()) == CommBackend::Mpi);
  REQUIRE_THROWS_WITH(trident::resolve_comm_backend("nccl", Device::cpu()),
                      Catch::Contains("--comm nccl needs --device cuda"));
  CHECK(trident::comm_backend_available(CommBackend::Mpi));
#if defined(TRIDENT_WITH_NCCL)
  CHECK(trident::default_comm_backend(Device::cuda(0)) == CommBackend::Nccl);
#else
  CHECK(trident::default_comm_backend(Device::cuda(0)) == CommBackend::Mpi);
  REQUIRE_THROWS_WITH(trident::resolve_comm_backend("nccl", Device::cuda(0)),
                      Catch::Contains("no NCCL"));
#endif
}

TEST_CASE("the factory builds MPI groups for the CPU that reduce over their axis", "[mpi]") {
  auto world = make_world();
  const int size = world->size(), rank = world->rank();
  const int pp = size % 2 == 0 ? 2 : 1;
  const trident::Topology topo(rank, size, trident::resolve_layout(size, 0, 1, pp));
  auto groups = trident::make_comm_groups(*world, topo, Device::cpu());
  REQUIRE(groups->backend() == CommBackend::Mpi);
  CHECK(&groups->world() == world.get());
  CHECK(dynamic_cast<trident::MpiCommunicator*>(&groups->dp()) != nullptr);
  CHECK(&groups->dp() == &groups->mpi().dp());
  CHECK(groups->dp().name() == "dp");
  CHECK(groups->dp().size() == topo.layout().dp);
  CHECK(groups->pp().rank() == topo.pp_rank());
  // pp == 2: both stages are ends and share the tied embedding.
  CHECK((groups->embedding() != nullptr) == (pp == 2));
  groups->set_timeout(std::chrono::seconds(60));
  int64_t v = rank;
  groups->dp().all_reduce(&v, 1, DType::I64, trident::ReduceOp::Sum);
  int64_t want = 0;
  for (int r : topo.dp_group()) want += r;
  CHECK(v == want);
  if (groups->embedding() != nullptr) {
    int64_t e = 1;
    groups->embedding()->all_reduce(&e, 1, DType::I64, trident::ReduceOp::Sum);
    CHECK(e == 2);
  }
}

TEST_CASE("host buffers never take the device staging path", "[mpi]") {
  std::vector<float> host(16, 1.0f);
  CHECK_FALSE(trident::detail::is_device_pointer(host.data()));
  CHECK_FALSE(trident::detail::is_device_pointer(nullptr));
  CHECK(trident::detail::make_device_staging({{host.data(), host.size() * sizeof(float),
                                               trident::detail::StageDir::InOut}}) == nullptr);
}

namespace {
std::map<void*, size_t>* g_live = nullptr;  // blocks the counting allocator handed out
void* counting_alloc(size_t bytes) {
  void* p = std::malloc(bytes);
  (*g_live)[p] = bytes;
  return p;
}
void counting_free(void* p) {
  g_live->erase(p);
  std::free(p);
}
}  // namespace

TEST_CASE("HostBlockCache reuses the smallest fitting block, rounds sizes and bounds the cache",
          "[mpi]") {
  std::map<void*, size_t> live;
  g_live = &live;
  {
    HostBlockCache cache(counting_alloc, counting_free, 3 * HostBlockCache::kGranularity);
    auto a = cache.acquire(1000);
    CHECK(a.bytes == HostBlockCache::kGranularity);
    auto b = cache.acquire(HostBlockCache::kGranularity + 1);
    CHECK(b.bytes == 2 * HostBlockCache::kGranularity);
    CHECK(live.size() == 2);
    cache.release(b);
    cache.release(a);
    CHECK(cache.cached_blocks() == 2);
    CHECK(cache.cached_bytes() == 3 * HostBlockCache::kGranularity);
    // The smallest block that fits: a small request gets a, a larger one b.
    auto c = cache.acquire(10);
    CHECK(c.ptr == a.ptr);
    auto d = cache.acquire(HostBlockCache::kGranularity + 5);
    CHECK(d.ptr == b.ptr);
    CHECK(live.size() == 2);  // no new allocation
    auto e = cache.acquire(5 * HostBlockCache::kGranularity);
    CHECK(live.size() == 3);
    cache.release(c);
    cache.release(d);
    cache.release(e);  // over the bound: freed, not cached
    CHECK(live.size() == 2);
    CHECK(cache.cached_bytes() == 3 * HostBlockCache::kGranularity);
  }
  CHECK(live.empty());  // the destructor frees the cached blocks
  g_live = nullptr;
}
