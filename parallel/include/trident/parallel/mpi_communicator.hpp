// Communicator over an MPI communicator, for host memory; ProcessGroups: the tp, dp and pp
// communicators of a Topology.
//
// Each MpiCommunicator owns its MPI_Comm (a duplicate or a split, freed on destruction) and
// one communication thread that runs its operations in FIFO order: Open MPI does not
// progress non-blocking collectives by itself, and a single thread per communicator, fed
// in the same order on every rank, cannot deadlock on collectives. Collectives run as
// blocking MPI calls on that thread; send/recv are posted there as MPI_Isend/MPI_Irecv and
// polled while the queue is idle. Blocking calls go through the same queue, so they are
// ordered after every asynchronous call issued before them. MPI errors come back as
// trident::Error naming the rank, the communicator and the operation.
//
// After a timeout the communicator is unusable (an operation is stuck inside MPI); the job
// is expected to end, which run_guarded does. The communicator must be destroyed before the
// MpiRuntime. Its destructor waits for queued operations to finish (aborting the job after
// the timeout), except while an exception unwinds the stack or after a timeout: then the job
// is ending, operations not yet started are cancelled and one stuck inside MPI is abandoned,
// so the original error reaches run_guarded at once.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <thread>

#include "trident/parallel/communicator.hpp"
#include "trident/parallel/topology.hpp"

namespace trident {

namespace detail {
struct MpiCommState;  // shared by the communicator, its thread and its Work handles
}

class MpiCommunicator final : public Communicator {
 public:
  // A duplicate of MPI_COMM_WORLD (so user traffic on the world never interleaves with ours).
  static std::unique_ptr<MpiCommunicator> world(const std::string& name = "world");
  // Takes ownership of `comm`.
  MpiCommunicator(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;

  // Collective over this communicator: ranks with the same color form a new communicator,
  // ordered by key (ties by rank here). color must be >= 0.
  std::unique_ptr<MpiCommunicator> split(int color, int key, const std::string& name);

  // The MPI communicator, for local queries only: a collective on it from another thread
  // would race with this communicator's own thread.
  MPI_Comm handle() const;
  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  void set_timeout(std::chrono::milliseconds timeout) override;
  std::chrono::milliseconds timeout() const override;

  std::shared_ptr<Work> all_reduce_async(void* data, size_t count, DType dtype,
                                         ReduceOp op) override;
  std::shared_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op) override;
  std::shared_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                         DType dtype) override;
  std::shared_ptr<Work> broadcast_async(void* data, size_t count, DType dtype, int root) override;
  std::shared_ptr<Work> send_async(const void* data, size_t count, DType dtype, int dst,
                                   int tag = 0) override;
  std::shared_ptr<Work> recv_async(void* data, size_t count, DType dtype, int src,
                                   int tag = 0) override;
  std::shared_ptr<Work> barrier_async() override;

 private:
  std::shared_ptr<detail::MpiCommState> state_;
  std::thread thread_;
};

// The axis communicators of a Topology, split from `world` (collective over it: every rank
// constructs its ProcessGroups at the same point). Names: "tp", "dp", "pp".
class ProcessGroups {
 public:
  ProcessGroups(MpiCommunicator& world, const Topology& topology);

  const Topology& topology() const { return topology_; }
  MpiCommunicator& tp() const { return *tp_; }
  MpiCommunicator& dp() const { return *dp_; }
  MpiCommunicator& pp() const { return *pp_; }
  // Applies the timeout to the three communicators.
  void set_timeout(std::chrono::milliseconds timeout);

 private:
  Topology topology_;
  std::unique_ptr<MpiCommunicator> tp_, dp_, pp_;
};

}  // namespace trident
