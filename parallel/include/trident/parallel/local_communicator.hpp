// A communicator of one rank: collectives are copies or no-ops. It lets a single process run
// the same parallel code paths as a job (every axis of size 1) without MPI.
#pragma once
#include <memory>
#include <string>

#include "trident/parallel/communicator.hpp"

namespace trident {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  void set_timeout(std::chrono::milliseconds t) override { timeout_ = t; }
  std::chrono::milliseconds timeout() const override { return timeout_; }

  std::shared_ptr<Work> all_reduce_async(void* data, size_t count, DType dtype,
                                         ReduceOp op) override;
  std::shared_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op) override;
  std::shared_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                         DType dtype) override;
  std::shared_ptr<Work> broadcast_async(void* data, size_t count, DType dtype, int root) override;
  std::shared_ptr<Work> send_async(const void* data, size_t count, DType dtype, int dst,
                                   int tag) override;
  std::shared_ptr<Work> recv_async(void* data, size_t count, DType dtype, int src,
                                   int tag) override;
  std::shared_ptr<Work> barrier_async() override;

 private:
  std::string name_;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace trident
