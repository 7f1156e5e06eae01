// MPI's lifetime and the job-wide exit on error.
//
// Every program that uses MPI owns one MpiRuntime (in main, on the stack) and runs its work
// inside run_guarded(): an exception on any rank then prints one line naming the rank and
// the cause and ends the whole job through MPI_Abort, so no other rank waits forever in a
// collective. Communicators must be destroyed before the MpiRuntime.
#pragma once
#include <functional>
#include <string>

namespace trident {

class MpiRuntime {
 public:
  // MPI_Init_thread(MPI_THREAD_MULTIPLE); throws trident::Error when MPI provides less
  // (communicators run collectives on their own threads). If MPI is already initialised the
  // runtime checks the thread level and leaves finalisation to whoever initialised it.
  MpiRuntime(int* argc, char*** argv);
  MpiRuntime() : MpiRuntime(nullptr, nullptr) {}
  // MPI_Finalize; when the stack unwinds from an uncaught exception it aborts the job instead,
  // since finalising one rank while others wait in a collective would hang them.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // Rank and count among the processes sharing this node (MPI_COMM_TYPE_SHARED).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

 private:
  bool owns_ = false;
  int world_rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
};

// Prints "trident: rank R: <message>" to stderr (once per process, however many threads
// call it; a message already starting with "rank R: " is not prefixed again) and ends the job with
// MPI_Abort(MPI_COMM_WORLD, code). Without an initialised MPI it exits the process with `code`.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

// Runs body and returns its result. Installs MPI_ERRORS_RETURN on MPI_COMM_WORLD so MPI
// errors come back as codes (communicators turn them into trident::Error), and turns any
// exception escaping body into abort_job(message).
int run_guarded(const std::function<int()>& body);

// The world rank for messages: from MPI when initialised, else from the launch environment.
int rank_for_messages();

}  // namespace trident
