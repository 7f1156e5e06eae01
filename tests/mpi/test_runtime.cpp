// The MPI runtime against the launcher's environment: under mpirun, environment discovery
// and MPI agree on the rank, the world size and the node-local rank.
#include <catch2/catch.hpp>

#include "mpi_test_util.hpp"
#include "trident/parallel/launch_env.hpp"
#include "trident/parallel/mpi_runtime.hpp"

TEST_CASE("launch environment and MPI agree under mpirun", "[mpi]") {
  auto world = test_util::make_world();
  const trident::LaunchEnv env = trident::discover_launch_env();
  CHECK(env.launcher == "openmpi");
  CHECK(env.rank == world->rank());
  CHECK(env.world_size == world->size());
  // A second runtime inside an initialised MPI does not own it: it only reads the ranks.
  const trident::MpiRuntime nested;
  CHECK(nested.world_rank() == world->rank());
  CHECK(nested.world_size() == world->size());
  CHECK(nested.local_rank() == env.local_rank);  // one node: MPI_COMM_TYPE_SHARED agrees
  CHECK(nested.local_size() == env.local_size);
  CHECK(trident::rank_for_messages() == world->rank());
}
