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
// Every dataset is chunked (about 1 Mi elements a chunk, along dim 0) with HDF5's Fletcher-32
// filter: HDF5 verifies each chunk it reads (so does h5dump), and a flipped byte is reported
// with the file and the dataset. Files written before that carry a "checksum" attribute per
// dataset instead (checksum64 of its bytes, 16 hex digits), still verified when present.
//
// A writer writes to "<path>.tmp.<pid>" and commit() fsyncs and renames it into place, so a
// crash leaves either the previous checkpoint or a complete new one, never a half file. This
// writer is one process's (serial HDF5); parallel/parallel_checkpoint.hpp writes the same
// format from every rank of an MPI job.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trident/io/hdf5.hpp"

namespace trident {

// The root attributes that mark a file as a Trident checkpoint.
inline constexpr const char* kCheckpointFormat = "trident-checkpoint";
inline constexpr int64_t kCheckpointFormatVersion = 1;
// The HDF5 file format the writers ask for (H5Pset_libver_bounds): 1.10's, whose metadata
// (object headers, chunk indexes, superblock) carries checksums too, so a flipped byte anywhere
// in the file is caught, not only in the chunks. h5py and h5dump built on HDF5 >= 1.10 read it.
inline constexpr H5F_libver_t kCheckpointLibver = H5F_LIBVER_V110;

// A 64-bit checksum of a byte string (a multiply-xorshift hash over 8-byte words; detects any
// single flipped bit and almost all larger corruption; not cryptographic).
uint64_t checksum64(const void* data, size_t bytes);

// A box of a tensor, as HDF5 selects hyperslabs: `count[d]` elements from `start[d]` along each
// dimension d.
struct Hyperslab {
  std::vector<int64_t> start, count;
  int64_t numel() const;
};

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
  // The elements of `boxes` (disjoint) in the row-major order of the full tensor, into `out`
  // (as many floats as the boxes hold). Reads only the chunks under the boxes, each verified by
  // its Fletcher-32 checksum; a file with checksum attributes is read and verified whole first.
  void read_hyperslabs(const std::string& param, const std::string& state,
                       const std::vector<Hyperslab>& boxes, float* out) const;
  // Bytes of tensor data this reader has handed out (read, read_hyperslabs).
  int64_t bytes_read() const { return bytes_read_; }

 private:
  std::string dataset_or_throw(const std::string& param, const std::string& state) const;

  std::string path_;
  hdf5::File file_;
  mutable int64_t bytes_read_ = 0;
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
