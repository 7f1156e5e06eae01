// Entry point of trident_gpu_comm_tests. Without a usable CUDA device it prints SKIPPED and
// returns 77 (ctest's SKIP_RETURN_CODE) before MPI starts; `--probe-gpu` only does that check
// (0: a GPU is there), for the mpirun wrapper. Otherwise it runs like tests/mpi/mpi_main.cpp.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>

#include "mpi_catch_session.hpp"

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no usable CUDA device (%s)\n",
                rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
    return 77;
  }
  if (argc > 1 && std::strcmp(argv[1], "--probe-gpu") == 0) return 0;
  trident::MpiRuntime mpi(&argc, &argv);
  return trident::testing::run_mpi_catch_session(argc, argv, mpi, "trident_gpu_comm_tests");
}
