// Training checkpoints in HDF5, independent of the parallel layout that wrote them.
//
// File layout (every tensor full-size, little-endian, row-major):
//   /                       attributes: format = "trident-checkpoint", format_version = 1, step,
//                           and string/int/float metadata the trainer adds (model config,
//                           parallel layout, optimizer, schedule, RNG and data position; see
//                           the README's "Checkpoint format")
//   /params/<name>/value    f32, the parameter's full shape ("h.0.attn.c_attn.weight"; dotted
//                           names as Module::named_parameters gives them)
//   /params/<name>/<state>  f32, same shape: optimizer state ("exp_avg", "exp_avg_sq" for AdamW,
//                           "momentum_buffer" for SGD with momentum)
// Every dataset carries a "checksum" attribute (checksum64 of its bytes, 16 hex digits),
// verified on every read: a flipped byte is reported with the file and the dataset.
//
// A writer writes to "<path>.tmp.<pid>" and commit() fsyncs and renames it into place, so a
// crash leaves either the previous checkpoint or a complete new one, never a half file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/hdf5.hpp"

namespace trident {

// A 64-bit checksum of a byte string (a multiply-xorshift hash over 8-byte words; detects any
// single flipped bit and almost all larger corruption; not cryptographic).
uint64_t checksum64(const void* data, size_t bytes);

class CheckpointWriter {
 public:
  // Starts "<path>.tmp.<pid>"; the directory must exist.
  explicit CheckpointWriter(std::string path);
  ~CheckpointWriter();  // removes the temporary file unless committed
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void set_meta(const std::string& key, int64_t value);
  void set_meta(const std::string& key, double value);
  void set_meta(const std::string& key, const std::string& value);
  // Adds /params/<param>/<state> ("value" for the weights), f32, with its checksum.
  void add(const std::string& param, const std::string& state, const std::vector<int64_t>& shape,
           const float* data);
  // Closes, fsyncs and renames the file into place.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  std::optional<hdf5::File> file_;
  std::optional<hdf5::Node> params_;
  bool committed_ = false;
};

class CheckpointReader {
 public:
  // Opens and checks the format; a missing, truncated or foreign file throws naming it.
  explicit CheckpointReader(const std::string& path);
  const std::string& path() const { return path_; }

  bool has_meta(const std::string& key) const;
  int64_t meta_int(const std::string& key) const;
  double meta_double(const std::string& key) const;
  std::string meta_string(const std::string& key) const;

  std::vector<std::string> params() const;                          // parameter names, sorted
  std::vector<std::string> states(const std::string& param) const;  // "value", "exp_avg", ...
  bool has(const std::string& param, const std::string& state) const;
  std::vector<int64_t> shape(const std::string& param, const std::string& state) const;
  // The tensor's values, checksum verified (throws naming file and dataset on a mismatch).
  std::vector<float> read(const std::string& param, const std::string& state) const;

 private:
  std::string path_;
  hdf5::File file_;
};

// "<dir>/step_00000050.h5"
std::string checkpoint_path(const std::string& dir, int64_t step);
// The committed checkpoints in `dir` (step, path), by increasing step; none when `dir` is
// missing. Temporary files of interrupted writes are ignored.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// The newest checkpoint's path, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);
// Deletes all but the newest `keep` checkpoints (keep <= 0 keeps all), and stale temporary
// files left by killed writers.
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace trident
