#include "trident/parallel/communicator.hpp"

#include "trident/parallel/mpi_runtime.hpp"
#include "trident/trace/trace.hpp"

namespace trident {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
    case ReduceOp::Avg:
      return "avg";
  }
  return "?";
}

void Communicator::finish_blocking(const std::shared_ptr<Work>& work) {
  // The caller's time blocked in a blocking collective or transfer (exposed communication).
  trace::Span span("wait", trace::Category::Comm);
  if (span.active()) span.rename("wait " + work->description());
  try {
    work->wait();
  } catch (const CollectiveTimeout& e) {
    // The operation may still be inside MPI on the communication thread: this rank cannot
    // leave it, and its peers cannot finish it. End the job with the reason.
    abort_job(e.what(), 1);
  }
}

}  // namespace trident
