// Launch-environment discovery on fake environments: launcher order, local ranks, and the
// errors that name the malformed variable.
#include <catch2/catch.hpp>

#include "trident/core/error.hpp"
#include "trident/parallel/launch_env.hpp"

using trident::discover_launch_env;
using trident::EnvironmentMap;
using trident::LaunchEnv;

namespace {

// The message of the trident::Error thrown by discovering `env`, or "" when none is.
std::string error_of(const EnvironmentMap& env) {
  try {
    discover_launch_env(env);
  } catch (const trident::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("no launcher variables means rank 0 of 1", "[launch]") {
  LaunchEnv e = discover_launch_env(EnvironmentMap{{"HOME", "/root"}});
  CHECK(e.launcher == "none");
  CHECK(e.rank == 0);
  CHECK(e.world_size == 1);
  CHECK(e.local_rank == 0);
  CHECK(e.local_size == 1);
  CHECK(e.local_known);
}

TEST_CASE("Open MPI variables", "[launch]") {
  LaunchEnv e = discover_launch_env({{"OMPI_COMM_WORLD_RANK", "5"},
                                     {"OMPI_COMM_WORLD_SIZE", "8"},
                                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                     {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  CHECK(e.launcher == "openmpi");
  CHECK(e.rank == 5);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.local_size == 4);
  CHECK(e.local_known);
  CHECK(trident::describe(e) == "rank 5 of 8 (local 1 of 4, openmpi)");
}

TEST_CASE("Open MPI wins over Slurm, PMI and torchrun variables", "[launch]") {
  LaunchEnv e = discover_launch_env({{"OMPI_COMM_WORLD_RANK", "1"},
                                     {"OMPI_COMM_WORLD_SIZE", "2"},
                                     {"SLURM_STEP_ID", "0"},
                                     {"SLURM_PROCID", "7"},
                                     {"SLURM_NTASKS", "9"},
                                     {"PMI_RANK", "3"},
                                     {"PMI_SIZE", "4"},
                                     {"RANK", "2"},
                                     {"WORLD_SIZE", "3"}});
  CHECK(e.launcher == "openmpi");
  CHECK(e.rank == 1);
  CHECK(e.world_size == 2);
  CHECK_FALSE(e.local_known);  // no OMPI_COMM_WORLD_LOCAL_RANK: one node assumed
  CHECK(e.local_rank == 1);
  CHECK(e.local_size == 2);
}

TEST_CASE("Slurm variables count only inside a job step", "[launch]") {
  EnvironmentMap batch{{"SLURM_JOB_ID", "42"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"},
                       {"SLURM_LOCALID", "0"}, {"RANK", "3"},         {"WORLD_SIZE", "4"}};
  LaunchEnv in_batch_shell = discover_launch_env(batch);
  CHECK(in_batch_shell.launcher == "torchrun");  // SLURM_* ignored without SLURM_STEP_ID
  CHECK(in_batch_shell.rank == 3);
  CHECK(in_batch_shell.world_size == 4);

  EnvironmentMap step{{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "6"},
                      {"SLURM_NTASKS", "8"},  {"SLURM_LOCALID", "2"},
                      {"SLURM_NODEID", "1"},  {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"}};
  LaunchEnv e = discover_launch_env(step);
  CHECK(e.launcher == "slurm");
  CHECK(e.rank == 6);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 2);
  CHECK(e.local_size == 4);
  CHECK(e.local_known);

  step["SLURM_STEP_TASKS_PER_NODE"] = "4,3(x2)";
  step["SLURM_NODEID"] = "2";
  step["SLURM_PROCID"] = "8";
  step["SLURM_NTASKS"] = "10";
  step["SLURM_LOCALID"] = "1";
  e = discover_launch_env(step);
  CHECK(e.local_size == 3);

  step["SLURM_STEP_TASKS_PER_NODE"] = "4(x2";
  CHECK_THAT(error_of(step), Catch::Contains("SLURM_STEP_TASKS_PER_NODE"));
  step["SLURM_STEP_TASKS_PER_NODE"] = "4";
  CHECK_THAT(error_of(step), Catch::Contains("SLURM_NODEID=2"));
}

TEST_CASE("PMI and Cray PALS variables", "[launch]") {
  LaunchEnv hydra = discover_launch_env(
      {{"PMI_RANK", "3"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "2"}});
  CHECK(hydra.launcher == "pmi");
  CHECK(hydra.rank == 3);
  CHECK(hydra.world_size == 4);
  CHECK(hydra.local_rank == 1);
  CHECK(hydra.local_size == 2);

  LaunchEnv pals =
      discover_launch_env({{"PMI_RANK", "6"}, {"PMI_SIZE", "8"}, {"PALS_LOCAL_RANKID", "2"}});
  CHECK(pals.launcher == "pmi");
  CHECK(pals.local_rank == 2);
  CHECK(pals.local_known);
  CHECK(pals.local_size == 8);  // no count given: bounded by the world size

  LaunchEnv cray = discover_launch_env(
      {{"PMI_RANK", "5"}, {"PMI_SIZE", "8"}, {"PMI_LOCAL_RANK", "1"}, {"PMI_LOCAL_SIZE", "4"}});
  CHECK(cray.local_rank == 1);
  CHECK(cray.local_size == 4);
}

TEST_CASE("torchrun-style variables", "[launch]") {
  LaunchEnv e = discover_launch_env(
      {{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"}});
  CHECK(e.launcher == "torchrun");
  CHECK(e.rank == 3);
  CHECK(e.world_size == 4);
  CHECK(e.local_rank == 1);
  CHECK(e.local_size == 2);
}

TEST_CASE("malformed launch variables are errors naming the variable", "[launch]") {
  CHECK_THAT(error_of({{"OMPI_COMM_WORLD_RANK", "abc"}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
             Catch::Contains("OMPI_COMM_WORLD_RANK='abc'"));
  CHECK_THAT(error_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4x"}}),
             Catch::Contains("OMPI_COMM_WORLD_SIZE='4x'"));
  CHECK_THAT(error_of({{"OMPI_COMM_WORLD_RANK", "-1"}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
             Catch::Contains("OMPI_COMM_WORLD_RANK='-1'"));
  CHECK_THAT(error_of({{"OMPI_COMM_WORLD_RANK", ""}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
             Catch::Contains("OMPI_COMM_WORLD_RANK=''"));
  CHECK_THAT(error_of({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
             Catch::Contains("OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4"));
  CHECK_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "0"}}),
             Catch::Contains("WORLD_SIZE=0 must be at least 1"));
  CHECK_THAT(error_of({{"RANK", "2"}}), Catch::Contains("WORLD_SIZE is not set"));
  CHECK_THAT(error_of({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "one"}}),
             Catch::Contains("MPI_LOCALRANKID='one'"));
  CHECK_THAT(
      error_of(
          {{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}}),
      Catch::Contains("LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"));
  CHECK_THAT(error_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "8"}}),
             Catch::Contains("SLURM_PROCID=9 is not below SLURM_NTASKS=8"));
}

TEST_CASE("the process environment is read", "[launch]") {
  EnvironmentMap env = trident::process_environment();
  CHECK(env.count("PATH") == 1);
}
