// Entry point of trident_mpi_tests (and of the CPU-side GPU communication tests), run under
// mpirun: MPI lives as long as the Catch session (mpi_catch_session.hpp).
#define CATCH_CONFIG_RUNNER
#include "mpi_catch_session.hpp"

int main(int argc, char** argv) {
  trident::MpiRuntime mpi(&argc, &argv);
  return trident::testing::run_mpi_catch_session(argc, argv, mpi, "trident_mpi_tests");
}
