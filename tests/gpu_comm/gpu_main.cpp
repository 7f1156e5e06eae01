// Entry point of trident_gpu_comm_tests. Only a machine without a GPU skips (prints SKIPPED,
// exit 77, ctest's SKIP_RETURN_CODE) before MPI starts; any other CUDA failure fails, and
// TRIDENT_REQUIRE_GPU=1 makes a skip a failure (tests/gpu/gpu_skip.hpp). `--probe-gpu` only
// does that check (0: a GPU is there), for the mpirun wrapper gpu_or_skip.sh. Otherwise it
// runs like tests/mpi/mpi_main.cpp.
#define CATCH_CONFIG_RUNNER
#include <cstring>

#include "gpu_probe.hpp"
#include "mpi_catch_session.hpp"

int main(int argc, char** argv) {
  const int probe = trident::gpu_test::probe_gpu();
  if (probe >= 0) return probe;
  if (argc > 1 && std::strcmp(argv[1], "--probe-gpu") == 0) return 0;
  trident::MpiRuntime mpi(&argc, &argv);
  return trident::testing::run_mpi_catch_session(argc, argv, mpi, "trident_gpu_comm_tests");
}
