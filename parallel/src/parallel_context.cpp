#include "trident/parallel/parallel_context.hpp"

#include "trident/parallel/local_communicator.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/process_group_factory.hpp"

namespace trident {

ParallelContext::ParallelContext()
    : topology_(0, 1, ParallelLayout{}),
      owned_tp_(std::make_unique<LocalCommunicator>("tp")),
      owned_dp_(std::make_unique<LocalCommunicator>("dp")),
      owned_pp_(std::make_unique<LocalCommunicator>("pp")),
      tp_(owned_tp_.get()),
      dp_(owned_dp_.get()),
      pp_(owned_pp_.get()) {}

ParallelContext::ParallelContext(ProcessGroups& groups)
    : topology_(groups.topology()), tp_(&groups.tp()), dp_(&groups.dp()), pp_(&groups.pp()) {
  if (topology_.layout().pp > 1) {
    const bool ends = topology_.is_first_stage() || topology_.is_last_stage();
    auto sub = groups.pp().split(ends ? 0 : 1, topology_.pp_rank(), "embedding");
    if (ends) embedding_ = std::move(sub);
  }
  embedding_view_ = embedding_.get();
}

ParallelContext::ParallelContext(CommGroups& groups)
    : topology_(groups.topology()),
      tp_(&groups.tp()),
      dp_(&groups.dp()),
      pp_(&groups.pp()),
      embedding_view_(groups.embedding()) {}

ParallelContext::~ParallelContext() = default;

}  // namespace trident
