// ParallelContext: what a model needs to know to build its share of a dp x pp x tp job — the
// rank's coordinates and the communicator of each axis. Passed explicitly to the model's
// constructor (no global parallel state). The default context is one process.
#pragma once
#include <memory>

#include "trident/parallel/communicator.hpp"
#include "trident/parallel/topology.hpp"

namespace trident {

class ProcessGroups;
class CommGroups;

class ParallelContext {
 public:
  // One process: every axis has one rank.
  ParallelContext();
  // A rank of an MPI job. `groups` must outlive the context. Collective over the pipeline
  // group (it splits off the first/last-stage group that keeps tied embeddings in sync).
  explicit ParallelContext(ProcessGroups& groups);
  // A rank of a job whose communicators come from `groups` (MPI or NCCL, by device; see
  // process_group_factory.hpp), which already hold the embedding group. Not collective.
  // `groups` must outlive the context.
  explicit ParallelContext(CommGroups& groups);
  ~ParallelContext();

  const Topology& topology() const { return topology_; }
  const ParallelLayout& layout() const { return topology_.layout(); }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& pp() const { return *pp_; }
  // The first and last pipeline stages (both hold the tied token embedding); null on the
  // middle stages and when pp == 1.
  Communicator* embedding_group() const { return embedding_view_; }

 private:
  Topology topology_;
  std::unique_ptr<Communicator> owned_tp_, owned_dp_, owned_pp_;
  Communicator *tp_, *dp_, *pp_;
  std::unique_ptr<Communicator> embedding_;
  Communicator* embedding_view_ = nullptr;  // embedding_, or CommGroups' one
};

}  // namespace trident
