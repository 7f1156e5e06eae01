// Saving and loading a model's training state under any dp x tp x pp layout.
//
// Checkpoints hold full-size tensors by parameter name (core/checkpoint.hpp), so a file written
// by one layout loads under another. Two writers:
//   - parallel (parallel_checkpoint.hpp, needs parallel HDF5): every rank writes the elements it
//     owns straight into the full-shape datasets: the stage that first holds a parameter (the
//     tied embedding: the first stage), its tp shard, and of that shard the part this dp rank
//     owns (its ZeRO-1 shard of the optimizer state; weights and unsharded state split evenly
//     over dp); a parameter tp does not split (layer norms, biases after a row-parallel layer)
//     is split over the tp ranks as well. Every element has one writer; no tensor moves
//     between ranks.
//   - rank 0 (CheckpointWriter): tp shards all-gathered, ZeRO-1 state all-gathered over dp,
//     each stage's first replica streams its full tensors to world rank 0, which writes them.
// Loading needs no communication: every rank reads only the hyperslabs of its own shard (its
// part of the ZeRO-1 state), whichever layout wrote the file.
//
// Saved per parameter: "value" (fp32 master weights) and the optimizer's named state
// ("exp_avg"/"exp_avg_sq" for AdamW and ZeroAdamW, "momentum_buffer" for SGD with momentum).
// The optimizer's step count goes into the file's "optimizer_steps" attribute.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "trident/core/nn/module.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/io/checkpoint.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/parallel/parallel_checkpoint.hpp"
#include "trident/parallel/parallel_context.hpp"

namespace trident {

// Assembles every full-size tensor of the job on world rank 0 and hands each, once, to `sink`
// (param name, state name, tensor): "value" for each parameter and, with an optimizer, its
// named state. Collective over the whole job; `sink` runs on world rank 0 only.
using FullTensorSink =
    std::function<void(const std::string& param, const std::string& state, const Tensor& full)>;
void gather_full_state(const nn::Module& model, optim::Optimizer* optimizer,
                       const ParallelContext& ctx, const FullTensorSink& sink);

// Collective over the whole job. World rank 0 passes its writer; the others pass nullptr.
// `model` is this rank's share (its pipeline stage, its tensor-parallel shards).
void save_training_state(CheckpointWriter* writer, const nn::Module& model,
                         optim::Optimizer& optimizer, const ParallelContext& ctx);

// Collective over the whole job (`writer`'s communicator): every rank writes the elements it
// owns (see above) into `writer`, which it then commits.
void save_training_state(ParallelCheckpointWriter& writer, const nn::Module& model,
                         optim::Optimizer& optimizer, const ParallelContext& ctx,
                         Communicator& world);

// The boxes of the full tensor that hold elements [lo, hi) of this rank's shard `local_shape`
// of a parameter split by `spec` (flattened row-major), in that order; each box is a contiguous
// run of those elements (the next box continues where it ends).
std::vector<Hyperslab> shard_hyperslabs(const Shape& local_shape, const nn::ShardSpec& spec,
                                        int64_t lo, int64_t hi);

// Reads this rank's share of the parameters and optimizer state: only its shard's hyperslabs.
// Not collective: a rank that fails (shape mismatch, corrupted dataset) throws; callers agree
// on failure before going on.
void load_training_state(const CheckpointReader& reader, nn::Module& model,
                         optim::Optimizer& optimizer);

// Per-rank random-stream positions (the dropout modules' counters), as one string per rank
// gathered to world rank 0 (`rank_states` filled there, keyed by world rank). Collective.
std::map<int, std::string> gather_rank_strings(const std::string& mine, Communicator& world);
// The same, with the strings on every rank.
std::map<int, std::string> all_gather_rank_strings(const std::string& mine, Communicator& world);

// "h.0.attn.drop=1234;h.0.mlp.drop=5678": the stream offset of every Dropout in `model`.
std::string dropout_offsets(const nn::Module& model);
// Restores offsets written by dropout_offsets; throws when a name is unknown.
void set_dropout_offsets(nn::Module& model, const std::string& offsets);

}  // namespace trident
