// Rank discovery from the launcher's environment, before (or without) MPI_Init.
//
// Launchers are tried in this order; the first whose variables are present wins:
//   openmpi   OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE
//   slurm     only inside a job step (SLURM_STEP_ID set): SLURM_PROCID / SLURM_NTASKS /
//             SLURM_LOCALID, local size from SLURM_STEP_TASKS_PER_NODE ("4(x2),3") and
//             SLURM_NODEID. A batch shell inherits SLURM_* values describing something else.
//   pmi       MPICH Hydra, Intel MPI, Cray PALS: PMI_RANK / PMI_SIZE, local rank from
//             MPI_LOCALRANKID, PMI_LOCAL_RANK or PALS_LOCAL_RANKID, local size from
//             MPI_LOCALNRANKS or PMI_LOCAL_SIZE
//   torchrun  RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE
//   none      rank 0 of 1
// When a launcher does not give the local rank, local_known is false and the fallback
// assumes one node (local_rank = rank, local_size = world_size); when it gives the local rank
// but not the count, local_size is world_size (an upper bound). With MPI initialised,
// MpiRuntime::local_rank()/local_size() give the real answer.
#pragma once
#include <map>
#include <string>

namespace trident {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;             // rank among the processes on this node: picks the GPU
  int local_size = 1;             // processes on this node
  std::string launcher = "none";  // "openmpi", "slurm", "pmi", "torchrun" or "none"
  bool local_known = true;        // false when local_rank is the one-node guess
};

using EnvironmentMap = std::map<std::string, std::string>;

// The environment of this process (environ) as a map.
EnvironmentMap process_environment();

// Discovers the launch from `env`. Throws trident::Error naming the variable when a value
// is not a number, a rank is not below its size, or a launcher's variables are incomplete.
LaunchEnv discover_launch_env(const EnvironmentMap& env);
// Same, from the process environment.
LaunchEnv discover_launch_env();

// "rank 3 of 8 (local 1 of 4, openmpi)"
std::string describe(const LaunchEnv& env);

}  // namespace trident
