#include "trident/parallel/topology.hpp"

#include "trident/core/error.hpp"

namespace trident {
namespace {

void check_axis(const char* flag, int value) {
  TRIDENT_CHECK(value >= 1, flag, " ", value, " is not a positive number of ranks");
}

}  // namespace

void check_layout(const ParallelLayout& l, int world_size) {
  TRIDENT_CHECK(world_size >= 1, "world size ", world_size, " is not a positive number of ranks");
  check_axis("--dp", l.dp);
  check_axis("--tp", l.tp);
  check_axis("--pp", l.pp);
  const long long product = static_cast<long long>(l.dp) * l.tp * l.pp;  // no int overflow
  TRIDENT_CHECK(product == world_size, "--dp ", l.dp, " x --tp ", l.tp, " x --pp ", l.pp, " = ",
                product, " does not match the ", world_size, " ranks launched");
}

ParallelLayout resolve_layout(int world_size, int dp_or_0, int tp, int pp) {
  check_axis("--tp", tp);
  check_axis("--pp", pp);
  ParallelLayout l{dp_or_0, tp, pp};
  if (dp_or_0 == 0) {
    TRIDENT_CHECK(world_size >= 1 && world_size % (tp * pp) == 0, "--tp ", tp, " x --pp ", pp,
                  " = ", tp * pp, " does not divide the ", world_size,
                  " ranks launched: choose --tp and --pp whose product divides ", world_size);
    l.dp = world_size / (tp * pp);
  }
  check_layout(l, world_size);
  return l;
}

Topology::Topology(int world_rank, int world_size, ParallelLayout layout)
    : world_rank_(world_rank), layout_(layout) {
  check_layout(layout_, world_size);
  TRIDENT_CHECK(world_rank >= 0 && world_rank < world_size, "world rank ", world_rank,
                " is outside the ", world_size, " ranks launched");
  const int tp = layout_.tp, dp = layout_.dp, pp = layout_.pp;
  tp_rank_ = world_rank % tp;
  dp_rank_ = (world_rank / tp) % dp;
  pp_rank_ = world_rank / (tp * dp);
  for (int t = 0; t < tp; ++t) tp_group_.push_back(rank_of(dp_rank_, t, pp_rank_));
  for (int d = 0; d < dp; ++d) dp_group_.push_back(rank_of(d, tp_rank_, pp_rank_));
  for (int p = 0; p < pp; ++p) pp_group_.push_back(rank_of(dp_rank_, tp_rank_, p));
}

int Topology::rank_of(int dp_idx, int tp_idx, int pp_idx) const {
  TRIDENT_CHECK(dp_idx >= 0 && dp_idx < layout_.dp && tp_idx >= 0 && tp_idx < layout_.tp &&
                    pp_idx >= 0 && pp_idx < layout_.pp,
                "coordinates dp ", dp_idx, " tp ", tp_idx, " pp ", pp_idx,
                " are outside the layout dp ", layout_.dp, " tp ", layout_.tp, " pp ", layout_.pp);
  return ((pp_idx * layout_.dp) + dp_idx) * layout_.tp + tp_idx;
}

int Topology::prev_pipeline_rank() const {
  return is_first_stage() ? -1 : rank_of(dp_rank_, tp_rank_, pp_rank_ - 1);
}

int Topology::next_pipeline_rank() const {
  return is_last_stage() ? -1 : rank_of(dp_rank_, tp_rank_, pp_rank_ + 1);
}

std::string Topology::describe() const {
  return str_cat("rank ", world_rank_, ": dp ", dp_rank_, "/", layout_.dp, " tp ", tp_rank_, "/",
                 layout_.tp, " pp ", pp_rank_, "/", layout_.pp);
}

}  // namespace trident
