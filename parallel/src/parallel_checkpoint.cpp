#include "trident/parallel/parallel_checkpoint.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <thread>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"
#include "trident/parallel/mpi_runtime.hpp"

namespace trident {

namespace {

using hdf5::Handle;

// How long a rank that failed waits for the others to agree before it ends the job.
constexpr double kAgreeSeconds = 60;

// The lowest failing rank's message, or "" when no rank failed. Collective over `comm`.
// A failed HDF5 call can leave the other ranks inside one of HDF5's own collectives (a rank
// that ran out of disk space while allocating chunks leaves the others in its barrier): a
// failing rank that hears nothing for kAgreeSeconds ends the job with its message instead.
std::string first_error(const std::string& error, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int first_bad = error.empty() ? size : rank;
  MPI_Request request;
  MPI_Iallreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, comm, &request);
  if (error.empty()) {
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  } else {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(kAgreeSeconds);
    for (int done = 0; !done;) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (!done && std::chrono::steady_clock::now() > deadline) {
        abort_job(str_cat(error, " (the other ranks did not answer within ", kAgreeSeconds,
                          " s, stuck in HDF5's collective call: ending the job)"));
      }
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (first_bad == size) return "";
  int len = static_cast<int>(error.size());
  MPI_Bcast(&len, 1, MPI_INT, first_bad, comm);
  std::string message = rank == first_bad ? error : std::string(static_cast<size_t>(len), ' ');
  MPI_Bcast(message.data(), len, MPI_CHAR, first_bad, comm);
  return message;
}

}  // namespace

bool ParallelCheckpointWriter::available() {
#ifdef H5_HAVE_PARALLEL
  return true;
#else
  return false;
#endif
}

void ParallelCheckpointWriter::agree(const std::string& error) const {
  const std::string message = first_error(error, comm_);
  if (!message.empty()) throw Error(message);
}

ParallelCheckpointWriter::ParallelCheckpointWriter(std::string path, MPI_Comm comm)
    : path_(std::move(path)), comm_(comm) {
  TRIDENT_CHECK(available(), path_,
                ": this build's HDF5 has no MPI-IO (serial libhdf5); install Debian's "
                "libhdf5-openmpi-dev and reconfigure, or write through rank 0");
  MPI_Comm_rank(comm_, &rank_);
  long long pid = static_cast<long long>(::getpid());
  MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, comm_);
  tmp_ = str_cat(path_, ".tmp.", pid);
  std::string error;
#ifdef H5_HAVE_PARALLEL
  try {
    Handle fapl = hdf5::checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate failed");
    hdf5::check(H5Pset_fapl_mpio(fapl.id(), comm_, MPI_INFO_NULL),
                str_cat(tmp_, ": cannot use MPI-IO"));
    hdf5::check(H5Pset_libver_bounds(fapl.id(), kCheckpointLibver, kCheckpointLibver),
                str_cat(tmp_, ": cannot ask for the HDF5 1.10 file format"));
    file_.emplace(hdf5::File::create(tmp_, fapl.id()));
    params_.emplace(file_->create_group("params"));
  } catch (const std::exception& e) {
    error = e.what();
  }
#endif
  try {
    agree(error);
  } catch (...) {
    params_.reset();
    file_.reset();
    if (rank_ == 0) std::remove(tmp_.c_str());
    throw;
  }
}

ParallelCheckpointWriter::~ParallelCheckpointWriter() {
  if (committed_) return;
  params_.reset();
  file_.reset();  // collective: every rank is here (members throw on every rank or none)
  if (rank_ == 0) std::remove(tmp_.c_str());
}

void ParallelCheckpointWriter::expect_bytes(int64_t bytes) {
  std::string error;
  if (rank_ == 0) {
    std::string dir = std::filesystem::path(tmp_).parent_path().string();
    struct statvfs fs {};
    if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs) == 0) {
      const auto free = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
      if (free < bytes) {
        error = str_cat(path_, ": not enough disk space: the checkpoint needs ", bytes, " bytes, ",
                        free, " are free in ", dir);
      }
    }
  }
  agree(error);
}

void ParallelCheckpointWriter::set_meta(const std::string& key, int64_t value) {
  meta_int_[key] = value;
}
void ParallelCheckpointWriter::set_meta(const std::string& key, double value) {
  meta_double_[key] = value;
}
void ParallelCheckpointWriter::set_meta(const std::string& key, const std::string& value) {
  meta_string_[key] = value;
}

void ParallelCheckpointWriter::write(const std::string& param, const std::string& state,
                                     const std::vector<int64_t>& shape,
                                     const std::vector<Hyperslab>& mine, const float* data) {
  TRIDENT_CHECK(!committed_ && params_, path_, ": write after commit");
  const std::string where = str_cat(tmp_, ": /params/", param, "/", state);
  std::string error;
  std::optional<hdf5::Node> group;
  Handle ds;
  std::vector<Hyperslab> boxes;  // this rank's non-empty boxes
  // Collective metadata first: every rank creates the same group and dataset.
  try {
    TRIDENT_CHECK(param.find('/') == std::string::npos, "checkpoint: parameter name '", param,
                  "' contains '/'");
    group.emplace(params_->has(param) ? params_->open_group(param) : params_->create_group(param));
    const std::vector<hsize_t> dims(shape.begin(), shape.end());
    Handle space =
        hdf5::checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                      H5Sclose, str_cat(where, ": bad shape"));
    Handle dcpl = hdf5::checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate failed");
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (numel > 0 && !shape.empty()) {
      std::vector<hsize_t> chunk = dims;
      chunk[0] = static_cast<hsize_t>(hdf5::chunk_rows_for(shape));
      hdf5::check(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()),
                  str_cat(where, ": bad chunk size"));
      hdf5::check(H5Pset_fletcher32(dcpl.id()),
                  str_cat(where, ": cannot enable Fletcher-32 checksums"));
      // Every element is written: no fill values first (parallel HDF5 allocates chunks early).
      hdf5::check(H5Pset_fill_time(dcpl.id(), H5D_FILL_TIME_NEVER),
                  str_cat(where, ": cannot set the fill time"));
    }
    ds = hdf5::checked(H5Dcreate2(group->id(), state.c_str(), H5T_IEEE_F32LE, space.id(),
                                  H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
                       H5Dclose, str_cat(where, ": cannot create dataset"));
    for (const auto& b : mine) {
      TRIDENT_CHECK(b.start.size() == shape.size() && b.count.size() == shape.size(), where,
                    ": a hyperslab of ", b.start.size(), " dims for a tensor of ", shape.size());
      for (size_t d = 0; d < shape.size(); ++d) {
        TRIDENT_CHECK(b.start[d] >= 0 && b.count[d] >= 0 && b.start[d] + b.count[d] <= shape[d],
                      where, ": hyperslab outside the tensor");
      }
      if (b.numel() > 0) boxes.push_back(b);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree(error);
  // One collective write per box, as many rounds as the rank with the most boxes needs (a
  // rank with fewer joins with an empty selection). Each box goes through a memory space of
  // its own shape: HDF5 maps same-shape selections chunk by chunk, while a flat memory space
  // against an N-d file selection makes it iterate element by element.
  int rounds = static_cast<int>(boxes.size());
  MPI_Allreduce(MPI_IN_PLACE, &rounds, 1, MPI_INT, MPI_MAX, comm_);
#ifdef H5_HAVE_PARALLEL
  try {
    Handle dxpl = hdf5::checked(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5Pcreate failed");
    hdf5::check(H5Pset_dxpl_mpio(dxpl.id(), H5FD_MPIO_COLLECTIVE),
                str_cat(where, ": cannot ask for collective I/O"));
    const float* next = data;
    for (int round = 0; round < rounds; ++round) {
      Handle fspace =
          hdf5::checked(H5Dget_space(ds.id()), H5Sclose, str_cat(where, ": no dataspace"));
      Handle mspace;
      const float* src = next;
      if (round < static_cast<int>(boxes.size())) {
        const Hyperslab& b = boxes[static_cast<size_t>(round)];
        const std::vector<hsize_t> start(b.start.begin(), b.start.end()),
            count(b.count.begin(), b.count.end());
        hdf5::check(H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, start.data(), nullptr,
                                        count.data(), nullptr),
                    str_cat(where, ": bad hyperslab"));
        mspace =
            hdf5::checked(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr),
                          H5Sclose, str_cat(where, ": bad hyperslab"));
        next += b.numel();
      } else {
        const hsize_t one = 1;
        static const float dummy = 0;
        H5Sselect_none(fspace.id());
        mspace = hdf5::checked(H5Screate_simple(1, &one, nullptr), H5Sclose, "H5Screate failed");
        H5Sselect_none(mspace.id());
        src = &dummy;
      }
      hdf5::check(H5Dwrite(ds.id(), H5T_NATIVE_FLOAT, mspace.id(), fspace.id(), dxpl.id(), src),
                  str_cat(where, ": cannot write (disk full?)"));
    }
    bytes_written_ += static_cast<int64_t>(next - data) * static_cast<int64_t>(sizeof(float));
  } catch (const std::exception& e) {
    error = e.what();
  }
#else
  (void)data;  // unreachable: the constructor throws without MPI-IO
#endif
  agree(error);
}

void ParallelCheckpointWriter::commit() {
  TRIDENT_CHECK(!committed_ && file_, path_, ": committed twice");
  std::string error;
  params_.reset();
  try {
    file_->close();  // collective; throws when the final flush fails
  } catch (const std::exception& e) {
    error = e.what();
  }
  file_.reset();
  if (const std::string message = first_error(error, comm_); !message.empty()) {
    if (rank_ == 0) std::remove(tmp_.c_str());
    committed_ = true;  // nothing left to remove or close
    throw CheckpointCloseError(message);
  }
  if (rank_ == 0) {
    try {
      {
        hdf5::File f = hdf5::File::open_for_update(tmp_);
        f.set_attr("format", kCheckpointFormat);
        f.set_attr("format_version", kCheckpointFormatVersion);
        for (const auto& [k, v] : meta_int_) f.set_attr(k, v);
        for (const auto& [k, v] : meta_double_) f.set_attr(k, v);
        for (const auto& [k, v] : meta_string_) f.set_attr(k, v);
        f.close();
      }
      commit_temporary_file(tmp_, path_);  // fsync, rename, fsync the directory
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  committed_ = true;
  if (const std::string message = first_error(error, comm_); !message.empty()) {
    if (rank_ == 0) std::remove(tmp_.c_str());
    throw CheckpointCloseError(message);  // rank 0's close of the metadata may have failed
  }
}

}  // namespace trident
