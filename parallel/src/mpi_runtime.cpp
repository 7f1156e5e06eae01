#include "trident/parallel/mpi_runtime.hpp"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "trident/core/error.hpp"
#include "trident/parallel/launch_env.hpp"

namespace trident {
namespace {

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown thread level";
}

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = MPI_THREAD_SINGLE;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    TRIDENT_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed with code ", rc);
    owns_ = true;
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    if (owns_) MPI_Finalize();
    owns_ = false;
    throw Error(str_cat("MPI provides only ", thread_level_name(provided),
                        "; Trident needs MPI_THREAD_MULTIPLE (communicators run collectives on "
                        "their own threads): use an MPI built with thread support"));
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL,
                          &node) == MPI_SUCCESS &&
      node != MPI_COMM_NULL) {
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
  }
}

MpiRuntime::~MpiRuntime() {
  if (!owns_ || !mpi_active()) return;
  if (std::uncaught_exceptions() > 0)
    abort_job("exception escaped while MPI was running (wrap the program in run_guarded)", 1);
  MPI_Finalize();
}

int rank_for_messages() {
  if (mpi_active()) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
  }
  try {
    return discover_launch_env().rank;
  } catch (const std::exception&) {
    return 0;
  }
}

void abort_job(const std::string& message, int code) {
  static std::atomic<bool> reported{false};  // one line per process, even from several threads
  if (!reported.exchange(true)) {
    // Communicator errors already start with "rank R: ".
    const std::string prefix = str_cat("rank ", rank_for_messages(), ": ");
    const bool named = message.compare(0, prefix.size(), prefix) == 0;
    std::fprintf(stderr, "trident: %s%s\n", named ? "" : prefix.c_str(), message.c_str());
    std::fflush(stderr);
  }
  std::fflush(stdout);
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, code == 0 ? 1 : code);
  std::_Exit(code == 0 ? 1 : code);
}

int run_guarded(const std::function<int()>& body) {
  if (mpi_active()) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  try {
    return body();
  } catch (const Error& e) {
    abort_job(e.what(), 1);
  } catch (const std::exception& e) {
    abort_job(str_cat("unexpected error: ", e.what()), 1);
  } catch (...) {
    abort_job("unknown exception", 1);
  }
}

}  // namespace trident
