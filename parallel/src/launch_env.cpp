#include "trident/parallel/launch_env.hpp"

#include <charconv>
#include <climits>
#include <optional>
#include <vector>

#include "trident/core/error.hpp"

extern char** environ;

namespace trident {
namespace {

const std::string* find(const EnvironmentMap& env, const char* name) {
  auto it = env.find(name);
  return it == env.end() ? nullptr : &it->second;
}

bool has_any(const EnvironmentMap& env, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (find(env, n)) return true;
  return false;
}

// Parses a whole string as a non-negative int, or throws naming the variable.
int parse_count(const std::string& name, const std::string& value) {
  int out = -1;
  const char* first = value.data();
  const char* last = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(first, last, out);
  TRIDENT_CHECK(!value.empty() && ec == std::errc() && ptr == last && out >= 0,
                "environment variable ", name, "='", value,
                "' is not a non-negative integer (launcher environment is malformed)");
  return out;
}

int required(const EnvironmentMap& env, const char* name, const char* launcher) {
  const std::string* v = find(env, name);
  TRIDENT_CHECK(v, "environment variable ", name, " is not set although other ", launcher,
                " variables are: the launch environment is incomplete");
  return parse_count(name, *v);
}

// The first of `names` that is set, parsed; nullopt when none is.
std::optional<int> first_of(const EnvironmentMap& env, std::initializer_list<const char*> names,
                            std::string* which = nullptr) {
  for (const char* n : names) {
    if (const std::string* v = find(env, n)) {
      if (which) *which = n;
      return parse_count(n, *v);
    }
  }
  return std::nullopt;
}

// SLURM_STEP_TASKS_PER_NODE looks like "4(x2),3": 4 tasks on each of 2 nodes, then 3.
int slurm_tasks_on_node(const std::string& spec, int node_id) {
  const char* var = "SLURM_STEP_TASKS_PER_NODE";
  std::vector<int> per_node;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string item =
        spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    int tasks = 0, repeat = 1;
    size_t paren = item.find("(x");
    if (paren == std::string::npos) {
      tasks = parse_count(var, item);
    } else {
      TRIDENT_CHECK(item.back() == ')', "environment variable ", var, "='", spec,
                    "' is malformed (expected a list like 4(x2),3)");
      tasks = parse_count(var, item.substr(0, paren));
      repeat = parse_count(var, item.substr(paren + 2, item.size() - paren - 3));
    }
    for (int i = 0; i < repeat && static_cast<int>(per_node.size()) <= node_id; ++i)
      per_node.push_back(tasks);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  TRIDENT_CHECK(node_id < static_cast<int>(per_node.size()),
                "environment variable SLURM_NODEID=", node_id, " is beyond the nodes listed in ",
                var, "='", spec, "'");
  return per_node[static_cast<size_t>(node_id)];
}

void check_below(const char* what, int value, const char* bound_name, int bound) {
  TRIDENT_CHECK(bound >= 1, "environment variable ", bound_name, "=", bound, " must be at least 1");
  TRIDENT_CHECK(value < bound, "environment variable ", what, "=", value, " is not below ",
                bound_name, "=", bound);
}

}  // namespace

EnvironmentMap process_environment() {
  EnvironmentMap env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

LaunchEnv discover_launch_env(const EnvironmentMap& env) {
  LaunchEnv out;
  std::string rank_var, size_var, local_var = "local rank", local_size_var = "local size";
  std::optional<int> local, local_size;

  if (has_any(env, {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"})) {
    out.launcher = "openmpi";
    rank_var = "OMPI_COMM_WORLD_RANK";
    size_var = "OMPI_COMM_WORLD_SIZE";
    local = first_of(env, {"OMPI_COMM_WORLD_LOCAL_RANK"}, &local_var);
    local_size = first_of(env, {"OMPI_COMM_WORLD_LOCAL_SIZE"}, &local_size_var);
  } else if (find(env, "SLURM_STEP_ID") && has_any(env, {"SLURM_PROCID", "SLURM_NTASKS"})) {
    out.launcher = "slurm";
    rank_var = "SLURM_PROCID";
    size_var = "SLURM_NTASKS";
    local = first_of(env, {"SLURM_LOCALID"}, &local_var);
    const std::string* tasks = find(env, "SLURM_STEP_TASKS_PER_NODE");
    std::optional<int> node = first_of(env, {"SLURM_NODEID"});
    if (tasks && node) {
      local_size = slurm_tasks_on_node(*tasks, *node);
      local_size_var = "SLURM_STEP_TASKS_PER_NODE";
    }
  } else if (has_any(env, {"PMI_RANK", "PMI_SIZE"})) {
    out.launcher = "pmi";
    rank_var = "PMI_RANK";
    size_var = "PMI_SIZE";
    local = first_of(env, {"MPI_LOCALRANKID", "PMI_LOCAL_RANK", "PALS_LOCAL_RANKID"}, &local_var);
    local_size = first_of(env, {"MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"}, &local_size_var);
  } else if (has_any(env, {"RANK", "WORLD_SIZE"})) {
    out.launcher = "torchrun";
    rank_var = "RANK";
    size_var = "WORLD_SIZE";
    local = first_of(env, {"LOCAL_RANK"}, &local_var);
    local_size = first_of(env, {"LOCAL_WORLD_SIZE"}, &local_size_var);
  } else {
    return out;  // no launcher: rank 0 of 1
  }

  out.rank = required(env, rank_var.c_str(), out.launcher.c_str());
  out.world_size = required(env, size_var.c_str(), out.launcher.c_str());
  check_below(rank_var.c_str(), out.rank, size_var.c_str(), out.world_size);

  if (local && local_size) {
    check_below(local_var.c_str(), *local, local_size_var.c_str(), *local_size);
    out.local_rank = *local;
    out.local_size = *local_size;
  } else if (local) {
    // A local rank without a count: world_size bounds the count from above.
    check_below(local_var.c_str(), *local, size_var.c_str(), out.world_size);
    out.local_rank = *local;
    out.local_size = out.world_size;
  } else {
    out.local_rank = out.rank;
    out.local_size = out.world_size;
    out.local_known = false;
  }
  return out;
}

LaunchEnv discover_launch_env() {
  return discover_launch_env(process_environment());
}

std::string describe(const LaunchEnv& env) {
  return str_cat("rank ", env.rank, " of ", env.world_size, " (local ", env.local_rank, " of ",
                 env.local_size, env.local_known ? "" : " assumed", ", ", env.launcher, ")");
}

}  // namespace trident
