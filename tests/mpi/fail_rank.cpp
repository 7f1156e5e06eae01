// Failure injection for the job-wide exit tests, run under mpirun -np 3 with a mode:
//   throw     rank 1 throws trident::Error("injected failure") while the others wait in a
//             blocking all_reduce; run_guarded must end the job naming rank 1 and the cause.
//   kill      rank 1 dies by SIGKILL while the others wait in the all_reduce; mpirun must
//             end the job.
//   watchdog  rank 1 skips the all_reduce (sleeps); the others' blocking all_reduce times
//             out after 2 s and the watchdog aborts the job naming the operation.
//   timeout   as watchdog, but the others wait on an asynchronous all_reduce: Work::wait
//             throws CollectiveTimeout, which run_guarded reports.
// Every mode must end non-zero; the all_reduce returning would be a bug.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "trident/core/error.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/mpi_runtime.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  trident::MpiRuntime mpi(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  return trident::run_guarded([&] {
    TRIDENT_CHECK(mode == "throw" || mode == "kill" || mode == "watchdog" || mode == "timeout",
                  "usage: trident_mpi_fail_rank throw|kill|watchdog|timeout (got '", mode, "')");
    auto world = trident::MpiCommunicator::world();
    world->set_timeout(mode == "watchdog" || mode == "timeout" ? 2s : 120s);
    std::vector<float> data(1001, 1.0f);
    world->barrier();
    if (world->rank() == 1) {
      std::this_thread::sleep_for(500ms);  // the other ranks are inside the all_reduce now
      if (mode == "throw") throw trident::Error("injected failure");
      if (mode == "kill") std::raise(SIGKILL);
      std::this_thread::sleep_for(120s);  // skip the all_reduce, alive
      return 0;
    }
    if (mode == "timeout") {
      auto work = world->all_reduce_async(data.data(), data.size(), trident::DType::F32,
                                          trident::ReduceOp::Sum);
      try {
        work->wait();
      } catch (const trident::CollectiveTimeout& e) {
        std::fprintf(stderr, "rank %d caught CollectiveTimeout\n", world->rank());
        throw;
      }
    } else {
      world->all_reduce(data.data(), data.size(), trident::DType::F32, trident::ReduceOp::Sum);
    }
    std::printf("rank %d: the all_reduce returned, which it must not\n", world->rank());
    return 0;
  });
}
