// Communicator over NCCL, for device buffers (CUDA builds with NCCL: TRIDENT_WITH_NCCL).
//
// Bootstrap. create() is collective over an MpiCommunicator: its rank 0 makes the NCCL unique
// id, broadcast over MPI, and every rank joins on its CUDA device. split() makes the axis
// communicators with ncclCommSplit (same colours and keys as ProcessGroups), so only the
// world communicator needs the MPI bootstrap. NCCL runs in non-blocking mode
// (config.blocking = 0): no NCCL call can hang the host, and every wait on NCCL has a timeout.
//
// Streams. Collectives run on the communicator's own (high-priority) stream. Each call records
// an event on the CUDA backend's compute stream (trident::cuda_compute_stream) and makes the
// communication stream wait on it, so the collective sees every kernel queued before the call;
// timing events are recorded on the communication stream just before and after it. Work::wait()
// does not block the host: it makes the compute stream wait on the completion event, so kernels
// queued after wait() see the result while the kernels queued between launch and wait() overlap
// the collective (the data-parallel buckets); call it where the result is consumed. test() is
// true once the collective completed on the device; Work::synchronize() (or
// NcclCommunicator::synchronize(work)) blocks the host until then. run_seconds() is the time
// between the two events on the communication stream; stall_seconds() the time the compute
// stream stood at the first wait() before the collective completed. The blocking forms
// (all_reduce, ...) are the asynchronous ones waited on, so for device buffers they return
// once the collective is queued, ordered before later compute kernels.
//
// Memory. Device buffers of a call are recorded with the caching allocator on the
// communication stream (Allocator::record_stream): a tensor freed right after wait() is not
// handed out again until the collective has completed on the device.
//
// Host buffers. Every call looks at its pointers (cudaPointerGetAttributes); host buffers
// (loss scalars, flags, gradient norms) go to the MPI communicator of the same group, given at
// creation, which keeps MpiCommunicator's semantics. The two paths are ordered separately.
//
// Failures and timeouts. A watchdog thread per communicator polls the in-flight collectives
// (cudaEventQuery) and ncclCommGetAsyncError. An asynchronous NCCL error aborts the
// communicator (ncclCommAbort) and fails every in-flight work with a trident::Error naming the
// rank, the communicator and the operation. A collective that does not complete within the
// timeout (counted from its issue or from the last completion, whichever is later) aborts the
// communicator and fails with CollectiveTimeout; then, by default, the watchdog ends the job
// through abort_job with that message, as a blocking MPI call's watchdog does, since kernels
// queued after it can no longer be trusted. set_abort_job_on_timeout(false) leaves the report
// to the next wait(), test() or synchronize() (tests use this). After an abort every call
// throws.
//
// Reductions: bf16 and f16 reduce natively (ncclBfloat16, ncclFloat16; no f32 staging, so the
// sum is accumulated as NCCL does, in the element type per step); Avg is ncclAvg, refused for
// integer types. Counts are size_t (no INT_MAX limit).
//
// Send/recv: ncclSend/ncclRecv. Tags are checked for range but not matched: NCCL delivers the
// messages between two ranks in issue order, so both sides must issue them in the same order.
// The number of elements received is not checked. A send and a receive that must progress
// together (a ring exchange, a send to oneself) go between group_start() and group_end(),
// which issue them as one NCCL group; their works complete together.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <memory>
#include <string>

#include "trident/parallel/communicator.hpp"
#include "trident/parallel/mpi_communicator.hpp"

namespace trident {

namespace detail {
struct NcclCommState;
}

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `host`: an NCCL communicator of host's ranks (same rank order) on CUDA
  // device `device`, named like host. `host` carries the host-buffer operations and must
  // outlive the returned communicator. Uses host's timeout.
  static std::unique_ptr<NcclCommunicator> create(MpiCommunicator& host, int device);
  ~NcclCommunicator() override;

  // Collective over this communicator (every rank calls it, as with ncclCommSplit): ranks with
  // the same color >= 0 form a new communicator ordered by key. A rank passing color < 0 joins
  // none and gets nullptr. `host` is the MPI communicator of the new group (split with the same
  // color and key); it is required for color >= 0 and must outlive the result.
  std::unique_ptr<NcclCommunicator> split(int color, int key, MpiCommunicator* host);

  int device() const;
  cudaStream_t stream() const;  // the communication stream
  ncclComm_t handle() const;    // for local queries only
  MpiCommunicator& host() const;

  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  // Applies to the NCCL operations; the host communicator keeps its own timeout.
  void set_timeout(std::chrono::milliseconds timeout) override;
  std::chrono::milliseconds timeout() const override;
  // See the header comment; default true.
  void set_abort_job_on_timeout(bool abort_job);

  // Device operations issued between the two are issued as one NCCL group at group_end(). The
  // works they return fail in wait() until then. Host-buffer operations are not grouped.
  void group_start();
  void group_end();

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
  // On the device: an all-reduce of one integer in the communicator's scratch buffer.
  std::shared_ptr<Work> barrier_async() override;

  // Blocks the host until `work` completed: work->synchronize(). For an NCCL work, on the device
  // (then rethrows its failure; CollectiveTimeout when the watchdog timed it out).
  static void synchronize(const std::shared_ptr<Work>& work);

 private:
  explicit NcclCommunicator(std::shared_ptr<detail::NcclCommState> state);
  std::shared_ptr<detail::NcclCommState> state_;
};

// ncclFloat32, ncclBfloat16, ...: the NCCL type of `dtype`.
ncclDataType_t nccl_type(DType dtype);

}  // namespace trident
