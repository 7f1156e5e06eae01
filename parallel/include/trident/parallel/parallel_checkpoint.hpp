// A checkpoint file written by every rank of an MPI job at once (parallel HDF5, MPI-IO).
//
// The file is the one core/checkpoint.hpp describes (full-shape datasets under /params, chunked
// with Fletcher-32, metadata on the root group), so CheckpointReader, h5dump and h5py read it
// whatever layout wrote it. Every rank creates every dataset (HDF5's metadata operations are
// collective) and then writes only the hyperslabs it owns, with collective I/O
// (H5Pset_fapl_mpio, H5Pset_dxpl_mpio(H5FD_MPIO_COLLECTIVE)); a rank that owns nothing of a
// dataset still joins its write with an empty selection. No rank sees another rank's data:
// HDF5 exchanges at most the pieces of the chunks a rank assembles for the filter.
//
// Atomic like the serial writer: the file is "<path>.tmp.<pid of rank 0>"; commit() closes it
// on every rank, then world rank 0 adds the metadata, fsyncs and renames it into place. Every
// step ends with an agreement over the communicator, so a failure on any rank (an unwritable
// directory, a full disk) throws on every rank with the first failing rank's message. When a
// failed HDF5 call leaves the other ranks inside HDF5's own collective, the failing rank ends
// the job (abort_job) with its message after 60 s: no rank waits forever.
//
// Needs HDF5 built with MPI (Debian's libhdf5-openmpi-dev; CMake prefers it when installed).
// With serial HDF5 available() is false and the constructor throws.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "trident/io/checkpoint.hpp"

namespace trident {

// commit() could not close the file (its final flush failed: a full disk). HDF5 1.10 keeps such
// a file half open and crashes when MPI_Finalize shuts the library down, so a job that gets
// this error must end through MPI_Abort (after reporting it), not by returning from main.
class CheckpointCloseError : public Error {
 public:
  using Error::Error;
};

class ParallelCheckpointWriter {
 public:
  // Whether this build's HDF5 has MPI-IO.
  static bool available();

  // Collective over `comm`: creates the temporary file; the directory must exist.
  ParallelCheckpointWriter(std::string path, MPI_Comm comm);
  // Closes (collectively) and removes the temporary file unless committed. After a throw from
  // a member every rank has thrown, so the collective close meets every rank.
  ~ParallelCheckpointWriter();
  ParallelCheckpointWriter(const ParallelCheckpointWriter&) = delete;
  ParallelCheckpointWriter& operator=(const ParallelCheckpointWriter&) = delete;

  // Collective: throws on every rank when the file system has less room than `bytes` (the
  // tensors' size), before any data is written; a disk that fills up while writing is still
  // caught by write() and commit().
  void expect_bytes(int64_t bytes);

  // Root attributes, written by world rank 0 at commit (other ranks' values are ignored).
  void set_meta(const std::string& key, int64_t value);
  void set_meta(const std::string& key, double value);
  void set_meta(const std::string& key, const std::string& value);

  // Collective: every rank passes the same (param, state, shape), in the same order. Creates
  // /params/<param>/<state> (f32, `shape`, chunked, Fletcher-32) and writes `mine`: this rank's
  // boxes (disjoint from every other rank's), their elements in the row-major order of the
  // full tensor in `data`. An empty `mine` writes nothing.
  void write(const std::string& param, const std::string& state, const std::vector<int64_t>& shape,
             const std::vector<Hyperslab>& mine, const float* data);

  // Collective: closes the file, writes the metadata and renames it into place. Throws
  // CheckpointCloseError (on every rank) when any of it fails on any rank.
  void commit();

  const std::string& path() const { return path_; }
  // Bytes of tensor data this rank handed to HDF5.
  int64_t bytes_written() const { return bytes_written_; }

 private:
  // Throws on every rank when any rank's `error` is non-empty (the lowest such rank's message).
  void agree(const std::string& error) const;

  std::string path_, tmp_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  std::optional<hdf5::File> file_;
  std::optional<hdf5::Node> params_;
  std::map<std::string, std::string> meta_string_;
  std::map<std::string, int64_t> meta_int_;
  std::map<std::string, double> meta_double_;
  int64_t bytes_written_ = 0;
  bool committed_ = false;
};

}  // namespace trident
