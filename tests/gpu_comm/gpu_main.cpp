// Entry point of trident_gpu_comm_tests. Without a usable CUDA device it prints SKIPPED and
// returns 77 (ctest's SKIP_RETURN_CODE) before MPI starts; `--probe-gpu` only does that check
// (0: a GPU is there), for the mpirun wrapper. Otherwise it runs like tests/mpi/mpi_main.cpp:
// every rank runs the same test cases, and the exit code is non-zero when any rank failed.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "trident/parallel/mpi_runtime.hpp"

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
  return trident::run_guarded([&] {
    const std::string name = "rank" + std::to_string(mpi.world_rank());
    std::vector<char*> args(argv, argv + argc);
    args.push_back(const_cast<char*>("--name"));
    args.push_back(const_cast<char*>(name.c_str()));
    Catch::Session session;
    const int bad_args = session.applyCommandLine(static_cast<int>(args.size()), args.data());
    if (bad_args != 0) return bad_args;
    const Catch::ConfigData& config = session.configData();
    if (config.showHelp || config.listTests || config.listTestNamesOnly || config.listTags ||
        config.listReporters) {
      session.run();
      return 0;
    }
    const int failed = session.run();
    int failed_anywhere = 0;
    MPI_Allreduce(&failed, &failed_anywhere, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (mpi.world_rank() == 0)
      std::printf("trident_gpu_comm_tests: %d ranks, %d failed test cases over all ranks\n",
                  mpi.world_size(), failed_anywhere);
    return failed_anywhere == 0 ? 0 : 1;
  });
}
