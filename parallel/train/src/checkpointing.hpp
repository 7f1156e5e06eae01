// The trainer's checkpoints, resume, preemption signals and per-step agreement (private).
//
// A checkpoint (io/checkpoint.hpp, written through parallel/distributed_checkpoint.hpp) holds
// full-size parameters and optimizer state plus this metadata on the root group:
//   step, optimizer_steps, samples_consumed, tokens_seen   int64
//   model_config, layout, optimizer, data                   JSON strings
//   seed                                                    int64
//   rng_dropout_offsets                                     JSON {world rank: "name=offset;..."}
//   created, trident_version                                strings
// Resuming under the same layout continues bit for bit (the data order is a function of the
// step, the optimizer state and the dropout streams are restored); under another layout the
// tensors are resharded and only the dropout streams restart.
#pragma once
#include <cstdint>
#include <string>

#include "trident/core/optim/optimizer.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/parallel/parallel_context.hpp"
#include "trident/train/trainer.hpp"

namespace trident::train {

// What a checkpoint needs besides the tensors.
struct RunInfo {
  const TrainerOptions* opt = nullptr;
  const TrainableModel* model = nullptr;
  const ParallelContext* ctx = nullptr;
  std::string optimizer_name;  // "adamw", "sgd" (ZeRO-1 saves AdamW state)
  std::string data_description;
  int64_t sequences_per_step = 0;  // global batch
};

// Agreement on a failure found on some ranks (`error` empty where none): one all-reduce over
// `world`; the lowest failing rank prints "<program>: error: ..." once. True when any failed.
bool any_rank_failed(Communicator& world, const std::string& error, const std::string& program);

// Writes "<checkpoint dir>/step_<step>.h5" (step = optimizer steps done) and prunes old ones.
// With parallel HDF5 every rank writes its own share (parallel_checkpoint.hpp); with serial
// HDF5, or TRIDENT_CHECKPOINT_WRITER=rank0, world rank 0 gathers and writes everything.
// Collective over the job; returns the path (on every rank), the seconds it took and the bytes
// of tensor data this rank wrote (-1 with the rank-0 writer). A failure on any rank (an
// unwritable directory, a full disk) prints one message and returns "" on every rank.
std::string save_checkpoint(const RunInfo& info, TrainableModel& model, optim::Optimizer& optimizer,
                            Communicator& world, int64_t step, double* seconds = nullptr,
                            int64_t* bytes_written = nullptr);

// With resume (the newest checkpoint of the checkpoint directory) or resume_from, loads it
// into this rank's model and optimizer and returns its step; returns 0 when there is nothing
// to resume. A checkpoint of another model, optimizer, sequence length or global batch, or a
// corrupted one, ends the job with one message from the lowest failing rank. Collective.
// Returns -1 after that message (every rank).
int64_t resume_if_asked(const RunInfo& info, TrainableModel& model, optim::Optimizer& optimizer,
                        Communicator& world);

// SIGUSR1 and SIGTERM set a flag instead of killing the process (Slurm's --signal, scancel,
// a cluster's preemption): the loop finishes its step, checkpoints and returns.
void install_preemption_handlers();
// Back to the default actions once the loop no longer checks the flag (final validation).
void restore_default_signal_handlers();
// The signal received (0: none).
int preemption_signal();

// Per-step agreement over the whole job, one small all-reduce: whether any rank saw a
// non-finite loss or gradient norm, and whether any rank was asked to stop.
struct StepVerdict {
  bool non_finite = false;
  int stop_signal = 0;
};
StepVerdict agree_on_step(Communicator& world, bool local_non_finite);

}  // namespace trident::train
