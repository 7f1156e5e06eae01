// The caching allocator's private pool for CUDA graph capture (cuda_allocator.hpp): blocks
// allocated or freed while it is open stay the pool's after it closes (no allocation outside
// the pool gets them, so a graph's replays keep their addresses), a capture served by a warm
// pool calls no cudaMalloc, and release_private_pool gives the free blocks back to the cache.
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <set>

#include "gpu_test_util.hpp"
#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/cuda_allocator.hpp"

using namespace trident;
using trident::gpu_test::gpu;

TEST_CASE("the CUDA allocator's private pool keeps a graph's blocks reserved", "[runtime]") {
  auto& a = dynamic_cast<CudaAllocator&>(allocator_for(gpu()));
  const size_t bytes = 3 << 16;
  void* before = a.allocate(bytes);  // allocated outside, freed inside: adopted by the pool
  a.begin_private_pool();
  CHECK(a.private_pool_open());
  void* inside = a.allocate(bytes);
  a.deallocate(inside, bytes);
  a.deallocate(before, bytes);
  a.end_private_pool();
  CHECK(a.private_pool_blocks() == 2);
  CHECK(a.private_pool_free_blocks() == 2);
  // Outside the pool, the same size never gets a pool block.
  std::set<void*> outside;
  for (int i = 0; i < 4; ++i) outside.insert(a.allocate(bytes));
  CHECK(outside.count(inside) == 0);
  CHECK(outside.count(before) == 0);
  // Open again (a capture after the warm-up): the pool's blocks are served, no cudaMalloc.
  const uint64_t system_allocs = a.stats().system_allocs;
  const long long mallocs = cuda_emulated_mallocs();
  a.begin_private_pool();
  void* p = a.allocate(bytes);
  void* q = a.allocate(bytes);
  CHECK(std::set<void*>{p, q} == std::set<void*>{inside, before});
  a.deallocate(q, bytes);
  a.deallocate(p, bytes);
  a.end_private_pool();
  CHECK(a.stats().system_allocs == system_allocs);
  if (mallocs >= 0) CHECK(cuda_emulated_mallocs() == mallocs);
  // Released: the pool's free blocks go back to the cache and are handed out again.
  a.release_private_pool();
  CHECK(a.private_pool_blocks() == 0);
  for (void* o : outside) a.deallocate(o, bytes);
  std::set<void*> again;
  for (int i = 0; i < 6; ++i) again.insert(a.allocate(bytes));
  CHECK(again.count(inside) == 1);
  CHECK(again.count(before) == 1);
  for (void* o : again) a.deallocate(o, bytes);
}
