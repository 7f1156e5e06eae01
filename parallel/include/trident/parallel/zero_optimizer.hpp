// ZeRO-1: AdamW with its state sharded over the data-parallel group (Rajbhandari et al., 2020).
//
// Works with a DataParallelReducer built with `zero = true`: the parameters live in flat
// bucket buffers and each bucket's gradients are reduce-scattered, so rank r holds the
// averaged gradients of elements [shard_begin, shard_begin + shard_numel) of every bucket.
// This optimizer keeps exp_avg and exp_avg_sq for those elements only, flat per bucket
// (2 x 4 bytes x numel / dp per bucket: the state per rank drops by dp), updates only them,
// and all-gathers each bucket's values so every replica ends the step with all parameters.
//
// A shard may cut through parameters and span several: it is split into per-parameter pieces,
// each updated with its own group's weight decay, as optim::AdamW would (a bucket's pieces
// in one multi-tensor update, reading the gradients times grad_scale(): clipping folded in). Bucket
// b's all-gather runs on the communicator's thread while bucket b+1 is updated. step() waits for
// each bucket's reduction before updating it (a no-op after reducer.finish()), and for every
// all-gather before returning. A parameter in no group is not updated (as with optim::AdamW).
//
// Checkpoints: state_of() gives this rank's part of a parameter's state (1-D, elements
// shard_range() of the flattened parameter); gather_state() assembles the full state (collective
// over dp); load_state() takes a full-shape state and keeps this rank's part.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/optim/optimizer.hpp"
#include "trident/parallel/data_parallel.hpp"

namespace trident {

class ZeroAdamW final : public optim::Optimizer {
 public:
  // `groups` hold the reducer's parameters (any subset) with their weight decay, as for
  // optim::AdamW. `reducer` must have been built with zero = true and outlive the optimizer.
  ZeroAdamW(DataParallelReducer& reducer, std::vector<optim::ParamGroup> groups,
            const optim::AdamWOptions& opts);

  // Updates this rank's shard of every bucket and all-gathers the buckets.
  void step() override;

  // This rank's part of the state of groups()[group].params[index] ("exp_avg", "exp_avg_sq"),
  // 1-D views of the elements shard_range() of the flattened parameter (possibly empty).
  std::vector<std::pair<std::string, Tensor>> state_of(size_t group, size_t index) override;
  // [begin, end) of the flattened parameter that this rank's shard holds (begin == end: none).
  std::pair<int64_t, int64_t> shard_range(size_t group, size_t index) const;
  // The full state of that parameter, in its shape (copies). Collective over dp.
  std::vector<std::pair<std::string, Tensor>> gather_state(size_t group, size_t index);
  // Sets this rank's part of state `name` ("exp_avg" or "exp_avg_sq") from the full-shape
  // `full` (e.g. read from a checkpoint written under another layout).
  void load_state(size_t group, size_t index, const std::string& name, const Tensor& full);

  // Bytes of optimizer state this rank holds.
  size_t state_bytes() const;
  // Seconds the last step() waited for its all-gathers to finish.
  double exposed_gather_seconds() const { return exposed_gather_seconds_; }
  const optim::AdamWOptions& options() const { return opts_; }

 private:
  struct Piece {
    int64_t begin = 0;  // bucket element where the piece starts (inside this rank's shard)
    int64_t numel = 0;
    float weight_decay = 0;
  };
  struct Placement {  // where a group's parameter lives
    size_t bucket = 0;
    int64_t offset = 0;      // of the parameter in the bucket
    int64_t lo = 0, hi = 0;  // its elements in this rank's shard, relative to the parameter
  };
  Tensor& state_buffer(size_t bucket, const std::string& name);

  DataParallelReducer& reducer_;
  optim::AdamWOptions opts_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;       // per bucket: (shard_numel)
  std::vector<std::vector<Piece>> pieces_;         // per bucket
  std::vector<std::vector<Placement>> placement_;  // [group][index]
  double exposed_gather_seconds_ = 0;
};

}  // namespace trident
