// CommGroups: the world and axis communicators of a job on the backend its device calls for:
// NCCL for CUDA devices (when this build has NCCL), MPI for the CPU. The CLI name of a backend
// is "mpi" or "nccl" (for a `--comm` flag); "" or "auto" picks by device.
//
// The MPI ProcessGroups are always built (collective over `world`, like ProcessGroups): they
// are the MPI backend's communicators and, under NCCL, the host path of the NCCL ones (host
// buffers such as loss scalars go through MPI, device buffers through NCCL). The NCCL world
// communicator is bootstrapped over `world`; the axes are ncclCommSplit from it with
// ProcessGroups' colours and keys. With pp > 1, the first and last pipeline stages also get
// an "embedding" group (the tied token embedding), as ParallelContext builds for MPI.
//
// Every rank constructs its CommGroups at the same point, after MpiRuntime and `world`, and
// destroys it before them.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "trident/core/device.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/topology.hpp"

namespace trident {

enum class CommBackend { Mpi, Nccl };

const char* comm_backend_name(CommBackend backend);  // "mpi", "nccl"
// "mpi" or "nccl"; throws trident::Error naming the value and the choices otherwise.
CommBackend parse_comm_backend(const std::string& name);
// True when this build can run `backend` (MPI always; NCCL in CUDA builds with NCCL).
bool comm_backend_available(CommBackend backend);
// NCCL for a CUDA device when available, else MPI.
CommBackend default_comm_backend(Device device);
// `name` as given by a --comm flag: "" or "auto" is default_comm_backend(device); "nccl" is
// checked against the device and the build (trident::Error: "--comm nccl needs --device cuda").
CommBackend resolve_comm_backend(const std::string& name, Device device);

class CommGroups {
 public:
  CommGroups(MpiCommunicator& world, const Topology& topology, Device device, CommBackend backend);
  ~CommGroups();
  CommGroups(const CommGroups&) = delete;
  CommGroups& operator=(const CommGroups&) = delete;

  CommBackend backend() const { return backend_; }
  const Topology& topology() const;
  Device device() const { return device_; }
  Communicator& world() const;
  Communicator& tp() const;
  Communicator& dp() const;
  Communicator& pp() const;
  // The first and last pipeline stages' group when pp > 1; null elsewhere.
  Communicator* embedding() const;
  // The MPI groups: the MPI backend itself, or the host path under NCCL. ParallelContext is
  // built from these today.
  ProcessGroups& mpi() const;
  // Applies to every communicator here (and their host paths), not to `world` when MPI.
  void set_timeout(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  CommBackend backend_;
  Device device_;
  std::unique_ptr<Impl> impl_;
};

// The groups for a --comm value (see resolve_comm_backend).
std::unique_ptr<CommGroups> make_comm_groups(MpiCommunicator& world, const Topology& topology,
                                             Device device, const std::string& comm = "");

}  // namespace trident
