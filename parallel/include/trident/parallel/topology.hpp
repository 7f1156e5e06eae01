// The 3D rank grid: world = dp x pp x tp, as in Megatron-LM.
//
// Tensor-parallel ranks are innermost (neighbours, so on one node), then data, then pipeline:
//   world_rank = ((pp_idx * dp) + dp_idx) * tp + tp_idx
// e.g. dp=2, tp=2, pp=2: tp groups {0,1} {2,3} {4,5} {6,7}; dp groups {0,2} {1,3} {4,6}
// {5,7}; pp groups {0,4} {1,5} {2,6} {3,7}. Pure logic: no MPI.
#pragma once
#include <string>
#include <vector>

namespace trident {

struct ParallelLayout {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int world_size() const { return dp * tp * pp; }
};

// Fills in dp when dp_or_0 is 0 (dp = world_size / (tp * pp)), then checks the layout
// matches world_size. Throws trident::Error with the flags and numbers in the message.
ParallelLayout resolve_layout(int world_size, int dp_or_0, int tp, int pp);

// Throws trident::Error unless every axis is >= 1 and dp * tp * pp == world_size:
// "--dp 2 x --tp 2 x --pp 2 = 8 does not match the 6 ranks launched".
void check_layout(const ParallelLayout& layout, int world_size);

class Topology {
 public:
  Topology(int world_rank, int world_size, ParallelLayout layout);

  int world_rank() const { return world_rank_; }
  int world_size() const { return layout_.world_size(); }
  const ParallelLayout& layout() const { return layout_; }

  // Coordinates of this rank on each axis.
  int dp_rank() const { return dp_rank_; }
  int tp_rank() const { return tp_rank_; }
  int pp_rank() const { return pp_rank_; }

  // World ranks of the groups this rank belongs to, ordered by the axis coordinate
  // (so group[i] has coordinate i on that axis).
  const std::vector<int>& tp_group() const { return tp_group_; }
  const std::vector<int>& dp_group() const { return dp_group_; }
  const std::vector<int>& pp_group() const { return pp_group_; }

  bool is_first_stage() const { return pp_rank_ == 0; }
  bool is_last_stage() const { return pp_rank_ == layout_.pp - 1; }
  // World rank of the previous / next pipeline stage at the same dp and tp coordinates;
  // -1 at the first / last stage.
  int prev_pipeline_rank() const;
  int next_pipeline_rank() const;

  // World rank at the given coordinates.
  int rank_of(int dp_idx, int tp_idx, int pp_idx) const;

  // "rank 5: dp 0/2 tp 1/2 pp 1/2"
  std::string describe() const;

 private:
  int world_rank_;
  ParallelLayout layout_;
  int dp_rank_ = 0, tp_rank_ = 0, pp_rank_ = 0;
  std::vector<int> tp_group_, dp_group_, pp_group_;
};

}  // namespace trident
