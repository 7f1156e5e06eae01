// The Catch session of an MPI test program: every rank runs the same test cases in the same
// order (they are collective), named after its rank so a failure report says which rank failed;
// the exit code is the same on every rank: non-zero when an assertion failed on any rank.
// Included by the test mains only (tests/mpi/mpi_main.cpp, tests/gpu_comm/gpu_main.cpp).
#pragma once
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "trident/parallel/mpi_runtime.hpp"

namespace trident::testing {

inline int run_mpi_catch_session(int argc, char** argv, const MpiRuntime& mpi,
                                 const char* program) {
  return run_guarded([&] {
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
      session.run();  // prints the listing; its result is a count, not failures
      return 0;
    }
    const int failed = session.run();
    int failed_anywhere = 0;
    MPI_Allreduce(&failed, &failed_anywhere, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (mpi.world_rank() == 0)
      std::printf("%s: %d ranks, %d failed test cases over all ranks\n", program, mpi.world_size(),
                  failed_anywhere);
    return failed_anywhere == 0 ? 0 : 1;
  });
}

}  // namespace trident::testing
