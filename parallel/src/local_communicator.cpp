#include "trident/parallel/local_communicator.hpp"

#include <cstring>

namespace trident {

namespace {
class DoneWork final : public Work {
 public:
  explicit DoneWork(std::string what) : what_(std::move(what)) {}
  void wait() override {}
  bool test() override { return true; }
  std::string description() const override { return what_; }

 private:
  std::string what_;
};

std::shared_ptr<Work> done(const char* what) {
  return std::make_shared<DoneWork>(what);
}
}  // namespace

std::shared_ptr<Work> LocalCommunicator::all_reduce_async(void*, size_t, DType, ReduceOp) {
  return done("all_reduce");
}

std::shared_ptr<Work> LocalCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                              size_t recv_count, DType dtype,
                                                              ReduceOp) {
  if (send != recv && recv_count) std::memmove(recv, send, recv_count * dtype_size(dtype));
  return done("reduce_scatter");
}

std::shared_ptr<Work> LocalCommunicator::all_gather_async(const void* send, void* recv,
                                                          size_t send_count, DType dtype) {
  if (send != recv && send_count) std::memmove(recv, send, send_count * dtype_size(dtype));
  return done("all_gather");
}

std::shared_ptr<Work> LocalCommunicator::broadcast_async(void*, size_t, DType, int root) {
  TRIDENT_CHECK(root == 0, name_, ": broadcast from rank ", root, " in a group of one");
  return done("broadcast");
}

std::shared_ptr<Work> LocalCommunicator::send_async(const void*, size_t, DType, int dst, int) {
  throw Error(str_cat(name_, ": send to rank ", dst, " in a group of one"));
}

std::shared_ptr<Work> LocalCommunicator::recv_async(void*, size_t, DType, int src, int) {
  throw Error(str_cat(name_, ": recv from rank ", src, " in a group of one"));
}

std::shared_ptr<Work> LocalCommunicator::barrier_async() {
  return done("barrier");
}

}  // namespace trident
