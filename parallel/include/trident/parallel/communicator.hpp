// One collective interface over raw buffers, for every backend (MPI for host memory; NCCL
// for device memory).
//
// Every operation exists blocking and asynchronous. The asynchronous form returns a Work;
// its wait() blocks until the operation finished and rethrows its failure, or throws
// CollectiveTimeout when it makes no progress within the communicator's timeout. A blocking
// call is the asynchronous one waited on, with a watchdog: when it times out (a peer died,
// hung, or skipped the call) it ends the whole job through abort_job with the message, since
// a rank cannot leave a collective its peers may still be in.
//
// Calls must be issued in the same order on every rank of the communicator, as MPI requires
// for collectives. Send/recv follow MPI_Isend/MPI_Irecv semantics: post both sides
// asynchronously (or order them) for a ring; a blocking send may wait for its receiver.
//
// Element types: f32, f64, i32, i64, u8 everywhere. bf16 and f16 move bitwise in broadcast,
// all_gather, send and recv; reductions of bf16/f16 go through f32 staging buffers (converted,
// reduced in f32, rounded back to nearest even), which costs memory and a rounding per
// call. Avg is sum / size for floating types and is refused for integer types.
// Buffers passed to an asynchronous call must stay alive and untouched until it finishes.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "trident/core/dtype.hpp"
#include "trident/core/error.hpp"

namespace trident {

enum class ReduceOp { Sum, Max, Min, Avg };
const char* reduce_op_name(ReduceOp op);  // "sum", "max", "min", "avg"

// Thrown by Work::wait when an operation made no progress within the timeout. The message
// names the rank, the communicator and the operation.
class CollectiveTimeout : public Error {
 public:
  using Error::Error;
};

// The handle of an asynchronous operation.
class Work {
 public:
  virtual ~Work() = default;
  // Makes the operation's result available to what the caller does next: host work blocks
  // until it finished; device work (NCCL) orders the compute stream after it and returns (see
  // synchronize()). Rethrows its failure (trident::Error naming the rank, communicator and
  // operation); throws CollectiveTimeout after the timeout. May be called again: a failure is
  // rethrown each time.
  virtual void wait() = 0;
  // True once the operation finished, successfully or not (wait() then returns at once).
  virtual bool test() = 0;
  // Blocks the calling thread until the operation completed, on the device too, and rethrows
  // its failure. For host work this is wait(). For device work (NCCL) wait() only orders the
  // compute stream after the operation and returns at once; synchronize() is the host-blocking
  // form (a measuring thread, a buffer about to be released for good).
  virtual void synchronize() { wait(); }
  // Device work measures itself with timing events; these are meaningful once it completed
  // (after synchronize(), or test() true), and negative for work that does not (host work,
  // whose wait() blocks: its caller times that). run_seconds: how long the operation occupied
  // its stream, from the point where the stream started it to its completion. stall_seconds:
  // how long the consumer stream waited on it after the first wait(), max(0, completion -
  // the consumer reaching wait()); 0 when wait() was never called.
  virtual double run_seconds() { return -1; }
  virtual double stall_seconds() { return -1; }
  // "all_reduce of 1048576 f32 (sum)"
  virtual std::string description() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The name used in messages: "world", "tp", "dp", "pp".
  virtual const std::string& name() const = 0;

  // How long an operation may go without progress before wait() gives up; zero means
  // never. The default is 300 s.
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;
  virtual std::chrono::milliseconds timeout() const = 0;

  // In place: every rank ends with the reduction of all ranks' `data`.
  virtual std::shared_ptr<Work> all_reduce_async(void* data, size_t count, DType dtype,
                                                 ReduceOp op) = 0;
  // `send` holds size() * recv_count elements, block r for rank r; rank r receives the
  // reduction of every rank's block r. `send` and `recv` must not overlap.
  virtual std::shared_ptr<Work> reduce_scatter_async(const void* send, void* recv,
                                                     size_t recv_count, DType dtype,
                                                     ReduceOp op) = 0;
  // `recv` holds size() * send_count elements; block r is rank r's `send`. `send` may be
  // recv's own block (in place).
  virtual std::shared_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                                 DType dtype) = 0;
  virtual std::shared_ptr<Work> broadcast_async(void* data, size_t count, DType dtype,
                                                int root) = 0;
  virtual std::shared_ptr<Work> send_async(const void* data, size_t count, DType dtype, int dst,
                                           int tag = 0) = 0;
  // Fails unless exactly `count` elements arrive.
  virtual std::shared_ptr<Work> recv_async(void* data, size_t count, DType dtype, int src,
                                           int tag = 0) = 0;
  virtual std::shared_ptr<Work> barrier_async() = 0;

  // Blocking forms: the asynchronous call, waited on; a timeout aborts the job.
  void all_reduce(void* data, size_t count, DType dtype, ReduceOp op) {
    finish_blocking(all_reduce_async(data, count, dtype, op));
  }
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype, ReduceOp op) {
    finish_blocking(reduce_scatter_async(send, recv, recv_count, dtype, op));
  }
  void all_gather(const void* send, void* recv, size_t send_count, DType dtype) {
    finish_blocking(all_gather_async(send, recv, send_count, dtype));
  }
  void broadcast(void* data, size_t count, DType dtype, int root) {
    finish_blocking(broadcast_async(data, count, dtype, root));
  }
  void send(const void* data, size_t count, DType dtype, int dst, int tag = 0) {
    finish_blocking(send_async(data, count, dtype, dst, tag));
  }
  void recv(void* data, size_t count, DType dtype, int src, int tag = 0) {
    finish_blocking(recv_async(data, count, dtype, src, tag));
  }
  void barrier() { finish_blocking(barrier_async()); }

 protected:
  // wait(); on CollectiveTimeout, abort_job with its message (the watchdog).
  static void finish_blocking(const std::shared_ptr<Work>& work);
};

}  // namespace trident
