#include "trident/core/error.hpp"
#include "trident/parallel/mpi_communicator.hpp"

namespace trident {

// Each group is split with its first world rank as the color and the axis coordinate as the
// key, so rank i of a group communicator is the rank with coordinate i on that axis.
ProcessGroups::ProcessGroups(MpiCommunicator& world, const Topology& topology)
    : topology_(topology) {
  TRIDENT_CHECK(world.size() == topology.world_size(), "the topology has ", topology.world_size(),
                " ranks but communicator '", world.name(), "' has ", world.size());
  TRIDENT_CHECK(world.rank() == topology.world_rank(), "the topology is for rank ",
                topology.world_rank(), " but this is rank ", world.rank(), " of '", world.name(),
                "'");
  tp_ = world.split(topology.tp_group().front(), topology.tp_rank(), "tp");
  dp_ = world.split(topology.dp_group().front(), topology.dp_rank(), "dp");
  pp_ = world.split(topology.pp_group().front(), topology.pp_rank(), "pp");
  const ParallelLayout& l = topology.layout();
  TRIDENT_CHECK(tp_->size() == l.tp && dp_->size() == l.dp && pp_->size() == l.pp,
                "process groups do not match the layout: tp ", tp_->size(), " dp ", dp_->size(),
                " pp ", pp_->size(), " for --dp ", l.dp, " --tp ", l.tp, " --pp ", l.pp);
}

void ProcessGroups::set_timeout(std::chrono::milliseconds timeout) {
  tp_->set_timeout(timeout);
  dp_->set_timeout(timeout);
  pp_->set_timeout(timeout);
}

}  // namespace trident
