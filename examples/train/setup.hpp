// What trident-train checks and loads before it builds anything collective.
#pragma once
#include <string>
#include <vector>

#include "options.hpp"
#include "trident/io/data.hpp"
#include "trident/parallel/communicator.hpp"
#include "trident/train/model_registry.hpp"

namespace trident::train {

struct DataSplit {
  data::TokenStream train, val;  // sources opened, not loaded: each rank reads its windows
  std::string description;
  bool builtin = false;
};

// The built-in addition data set, or --data (HDF5 or .bin files, globs, comma lists) with
// --val-data or else its last 10% held out; every token must be inside the model's vocabulary
// (checked at open for data sets up to 64Mi tokens, and on every window read).
DataSplit load_data(const Options& opt, int64_t vocab);
// Batch, sequence and step flags against the model's context of `max_seq_len` tokens.
void check_sizes(const Options& opt, int64_t max_seq_len);
// The model flags for the model registry (trident/train/model_registry.hpp).
ModelArgs model_args(const Options& opt);
// Agreement on a failure found on some ranks (`error` empty where none): one all-reduce over
// `world`; the lowest failing rank prints "trident-train: error: ..." once. True when any failed.
bool any_rank_failed(Communicator& world, const std::string& error);
// --device: "cpu", "cuda:N" as given, or "cuda" = the GPU of this process's local rank
// (local rank mod visible GPUs), as mpirun, srun and torchrun launches expect.
Device resolve_device(const std::string& flag);
// Dense peak FLOP/s of one rank's device for MFU (bf16 tensor cores with --precision bf16, fp32
// otherwise); 0 on the CPU, where MFU is not reported.
double peak_flops_per_rank(Device device, const std::string& precision);

}  // namespace trident::train
