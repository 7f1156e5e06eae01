// CommGroups: MPI or NCCL communicators for a Topology (see process_group_factory.hpp).
#include "trident/parallel/process_group_factory.hpp"

#include "trident/core/error.hpp"

#if defined(TRIDENT_WITH_NCCL)
#include "trident/parallel/nccl_communicator.hpp"
#endif

namespace trident {

const char* comm_backend_name(CommBackend backend) {
  return backend == CommBackend::Nccl ? "nccl" : "mpi";
}

CommBackend parse_comm_backend(const std::string& name) {
  if (name == "mpi") return CommBackend::Mpi;
  if (name == "nccl") return CommBackend::Nccl;
  throw Error(str_cat("--comm '", name, "': expected mpi or nccl"));
}

bool comm_backend_available(CommBackend backend) {
#if defined(TRIDENT_WITH_NCCL)
  (void)backend;
  return true;
#else
  return backend == CommBackend::Mpi;
#endif
}

CommBackend default_comm_backend(Device device) {
  return device.is_cuda() && comm_backend_available(CommBackend::Nccl) ? CommBackend::Nccl
                                                                       : CommBackend::Mpi;
}

CommBackend resolve_comm_backend(const std::string& name, Device device) {
  if (name.empty() || name == "auto") return default_comm_backend(device);
  const CommBackend backend = parse_comm_backend(name);
  if (backend == CommBackend::Nccl) {
    TRIDENT_CHECK(device.is_cuda(), "--comm nccl needs --device cuda (NCCL moves GPU memory); ",
                  "the device is ", device.str(), ": use --comm mpi");
    TRIDENT_CHECK(comm_backend_available(backend),
                  "--comm nccl: this build of Trident has no NCCL (rebuild with CUDA and NCCL, "
                  "or set NCCL_ROOT when configuring); use --comm mpi");
  }
  return backend;
}

struct CommGroups::Impl {
  MpiCommunicator* mpi_world = nullptr;
  std::unique_ptr<ProcessGroups> mpi;
  std::unique_ptr<MpiCommunicator> mpi_embedding;
#if defined(TRIDENT_WITH_NCCL)
  std::unique_ptr<NcclCommunicator> world, tp, dp, pp, embedding;
#endif
};

CommGroups::CommGroups(MpiCommunicator& world, const Topology& topology, Device device,
                       CommBackend backend)
    : backend_(backend), device_(device), impl_(std::make_unique<Impl>()) {
  TRIDENT_CHECK(backend == CommBackend::Mpi || device.is_cuda(),
                "the NCCL communicators need a CUDA device, not ", device.str());
  TRIDENT_CHECK(comm_backend_available(backend), "this build of Trident has no ",
                comm_backend_name(backend), " communicator");
  Impl& m = *impl_;
  m.mpi_world = &world;
  m.mpi = std::make_unique<ProcessGroups>(world, topology);
  const bool ends = topology.is_first_stage() || topology.is_last_stage();
  if (topology.layout().pp > 1) {
    auto sub = m.mpi->pp().split(ends ? 0 : 1, topology.pp_rank(), "embedding");
    if (ends) m.mpi_embedding = std::move(sub);
  }
#if defined(TRIDENT_WITH_NCCL)
  if (backend == CommBackend::Nccl) {
    m.world = NcclCommunicator::create(world, device.index);
    // The colours and keys of ProcessGroups (process_groups.cpp).
    m.tp = m.world->split(topology.tp_group().front(), topology.tp_rank(), &m.mpi->tp());
    m.dp = m.world->split(topology.dp_group().front(), topology.dp_rank(), &m.mpi->dp());
    m.pp = m.world->split(topology.pp_group().front(), topology.pp_rank(), &m.mpi->pp());
    if (topology.layout().pp > 1)
      m.embedding = m.pp->split(ends ? 0 : -1, topology.pp_rank(), m.mpi_embedding.get());
  }
#endif
}

CommGroups::~CommGroups() = default;

const Topology& CommGroups::topology() const {
  return impl_->mpi->topology();
}

#if defined(TRIDENT_WITH_NCCL)
#define TRIDENT_PICK(nccl, mpi) (backend_ == CommBackend::Nccl ? (nccl) : (mpi))
#else
#define TRIDENT_PICK(nccl, mpi) (mpi)
#endif

Communicator& CommGroups::world() const {
  return TRIDENT_PICK(static_cast<Communicator&>(*impl_->world),
                      static_cast<Communicator&>(*impl_->mpi_world));
}
Communicator& CommGroups::tp() const {
  return TRIDENT_PICK(static_cast<Communicator&>(*impl_->tp),
                      static_cast<Communicator&>(impl_->mpi->tp()));
}
Communicator& CommGroups::dp() const {
  return TRIDENT_PICK(static_cast<Communicator&>(*impl_->dp),
                      static_cast<Communicator&>(impl_->mpi->dp()));
}
Communicator& CommGroups::pp() const {
  return TRIDENT_PICK(static_cast<Communicator&>(*impl_->pp),
                      static_cast<Communicator&>(impl_->mpi->pp()));
}
Communicator* CommGroups::embedding() const {
  return TRIDENT_PICK(static_cast<Communicator*>(impl_->embedding.get()),
                      static_cast<Communicator*>(impl_->mpi_embedding.get()));
}
#undef TRIDENT_PICK

ProcessGroups& CommGroups::mpi() const {
  return *impl_->mpi;
}

void CommGroups::set_timeout(std::chrono::milliseconds timeout) {
  impl_->mpi->set_timeout(timeout);
  if (impl_->mpi_embedding) impl_->mpi_embedding->set_timeout(timeout);
#if defined(TRIDENT_WITH_NCCL)
  for (auto* c : {impl_->world.get(), impl_->tp.get(), impl_->dp.get(), impl_->pp.get(),
                  impl_->embedding.get()})
    if (c != nullptr) c->set_timeout(timeout);
#endif
}

std::unique_ptr<CommGroups> make_comm_groups(MpiCommunicator& world, const Topology& topology,
                                             Device device, const std::string& comm) {
  return std::make_unique<CommGroups>(world, topology, device, resolve_comm_backend(comm, device));
}

}  // namespace trident
