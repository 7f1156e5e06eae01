#include "checkpointing.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "trident/io/checkpoint.hpp"
#include "trident/parallel/distributed_checkpoint.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/parallel_checkpoint.hpp"

namespace trident::train {

namespace {

using json = nlohmann::json;

volatile std::sig_atomic_t g_signal = 0;

// The first signal asks for a checkpoint at the end of the step; a second one (an impatient
// user, or a scheduler's follow-up) gets the default action: the process ends.
extern "C" void on_preemption_signal(int sig) {
  if (g_signal != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal = sig;
}

json layout_json(const RunInfo& info) {
  const TrainerOptions& o = *info.opt;
  const ParallelLayout& L = info.ctx->layout();
  return {{"dp", L.dp},
          {"tp", L.tp},
          {"pp", L.pp},
          {"world_size", L.dp * L.tp * L.pp},
          {"zero", o.zero ? 1 : 0},
          {"micro_batches", o.micro_batches},
          {"batch", o.batch},
          {"seq", o.seq},
          {"schedule", o.schedule}};
}

json optimizer_json(const RunInfo& info) {
  const TrainerOptions& o = *info.opt;
  return {{"name", info.optimizer_name},
          {"lr", o.lr},
          {"min_lr", o.min_lr},
          {"warmup", o.warmup},
          {"total_steps", o.steps},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"eps", o.eps},
          {"momentum", o.momentum},
          {"nesterov", o.nesterov},
          {"grad_clip", o.grad_clip}};
}

std::string now_iso8601() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Everything in the file that must agree with this run before its tensors are used.
void check_compatible(const CheckpointReader& r, const RunInfo& info) {
  info.model->check_checkpoint_config(json::parse(r.meta_string("model_config")), r.path());
  const json saved_opt = json::parse(r.meta_string("optimizer"));
  TRIDENT_CHECK(saved_opt.at("name") == info.optimizer_name, r.path(), ": written with optimizer ",
                saved_opt.at("name").get<std::string>(), ", this run uses ", info.optimizer_name);
  const json saved_layout = json::parse(r.meta_string("layout"));
  TRIDENT_CHECK(saved_layout.at("seq") == info.opt->seq, r.path(), ": written with --seq ",
                saved_layout.at("seq").dump(), ", this run uses ", info.opt->seq,
                " (the data position would not carry over)");
  const int64_t saved_global = saved_layout.at("dp").get<int64_t>() *
                               saved_layout.at("micro_batches").get<int64_t>() *
                               saved_layout.at("batch").get<int64_t>();
  const int64_t saved_batch = saved_layout.at("batch").get<int64_t>();
  TRIDENT_CHECK(saved_global == info.sequences_per_step && saved_batch == info.opt->batch, r.path(),
                ": written with a global batch of ", saved_global, " sequences (", saved_batch,
                " per micro-batch); this run has ", info.sequences_per_step, " (", info.opt->batch,
                " per micro-batch): keep --batch and dp x --micro-batches equal "
                "so the data order continues");
}

// Root attributes of a checkpoint (the same on every rank; the writers take rank 0's).
template <typename Writer>
void set_run_meta(Writer& w, const RunInfo& info, int64_t step,
                  const std::map<int, std::string>& offsets) {
  const TrainerOptions& o = *info.opt;
  json rng = json::object();
  for (const auto& [rank, s] : offsets) rng[std::to_string(rank)] = s;
  w.set_meta("step", step);
  w.set_meta("samples_consumed", step * info.sequences_per_step);
  w.set_meta("tokens_seen", step * info.sequences_per_step * o.seq);
  w.set_meta("seed", static_cast<int64_t>(o.seed));
  w.set_meta("model_config", info.model->config().dump());
  w.set_meta("layout", layout_json(info).dump());
  w.set_meta("optimizer", optimizer_json(info).dump());
  w.set_meta("data", json{{"description", info.data_description},
                          {"position_unit", "global batches (= step)"},
                          {"position", step}}
                         .dump());
  w.set_meta("rng_dropout_offsets", rng.dump());
  w.set_meta("created", now_iso8601());
  w.set_meta("trident_version", std::string("0.1.0"));
}

// The parallel writer unless this build's HDF5 is serial or TRIDENT_CHECKPOINT_WRITER=rank0
// asks for the rank-0 gather (kept for comparison: bench/checkpoint_parallel.sh).
bool use_parallel_writer() {
  const char* env = std::getenv("TRIDENT_CHECKPOINT_WRITER");
  if (env != nullptr && std::string(env) == "rank0") return false;
  return ParallelCheckpointWriter::available();
}

MPI_Comm mpi_comm_of(Communicator& world) {
  if (auto* mpi = dynamic_cast<MpiCommunicator*>(&world)) return mpi->handle();
  return MPI_COMM_WORLD;
}

}  // namespace

std::string save_checkpoint(const RunInfo& info, TrainableModel& stage, optim::Optimizer& optimizer,
                            Communicator& world, int64_t step, double* seconds,
                            int64_t* bytes_written) {
  const auto t0 = std::chrono::steady_clock::now();
  const TrainerOptions& o = *info.opt;
  const std::string& dir = o.checkpoint_dir;
  nn::Module& model = stage.module();
  const std::string path = checkpoint_path(dir, step);
  std::string error;
  int64_t bytes = 0;
  // One message (from the lowest failing rank) and "" on every rank when any rank failed.
  bool must_abort = false;  // HDF5 left a file half closed: MPI_Finalize would crash
  auto failed = [&] {
    if (!any_rank_failed(world, error.empty() ? "" : "checkpoint not written: " + error, o.program))
      return false;
    if (must_abort) {
      std::fflush(stdout);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return true;
  };
  if (use_parallel_writer()) {
    // Every rank writes its own share; a failure on any rank throws on every rank.
    try {
      if (world.rank() == 0) std::filesystem::create_directories(dir);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (failed()) return "";
    try {
      ParallelCheckpointWriter writer(path, mpi_comm_of(world));
      set_run_meta(writer, info, step, all_gather_rank_strings(dropout_offsets(model), world));
      save_training_state(writer, model, optimizer, *info.ctx, world);
      writer.commit();
      bytes = writer.bytes_written();
    } catch (const CheckpointCloseError& e) {
      error = e.what();
      must_abort = true;
    } catch (const std::exception& e) {  // the same message on every rank
      error = e.what();
    }
  } else {
    // World rank 0 writes what the others send it; its failures are agreed on.
    std::unique_ptr<CheckpointWriter> writer;
    try {
      if (world.rank() == 0) {
        std::filesystem::create_directories(dir);
        writer = std::make_unique<CheckpointWriter>(path);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (failed()) return "";
    const auto offsets = gather_rank_strings(dropout_offsets(model), world);
    save_training_state(writer.get(), model, optimizer, *info.ctx);
    try {
      if (writer) {
        set_run_meta(*writer, info, step, offsets);
        writer->commit();
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    bytes = -1;  // not counted: world rank 0 writes everything
  }
  if (failed()) return "";
  if (world.rank() == 0) prune_checkpoints(dir, o.keep_checkpoints);
  if (seconds)
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (bytes_written) *bytes_written = bytes;
  return path;
}

int64_t resume_if_asked(const RunInfo& info, TrainableModel& stage, optim::Optimizer& optimizer,
                        Communicator& world) {
  const TrainerOptions& o = *info.opt;
  nn::Module& model = stage.module();
  std::string path = o.resume_from;
  if (path.empty() && o.resume) path = latest_checkpoint(o.checkpoint_dir);
  if (path.empty()) {
    if (o.resume && world.rank() == 0) {
      std::printf("resume: no checkpoint in %s yet, starting from step 0\n",
                  o.checkpoint_dir.c_str());
    }
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  std::string error;
  bool same_layout = false;
  int64_t bytes = 0;
  try {
    CheckpointReader r(path);
    check_compatible(r, info);
    load_training_state(r, model, optimizer);
    bytes = r.bytes_read();
    step = r.meta_int("step");
    const json saved_layout = json::parse(r.meta_string("layout"));
    const ParallelLayout& L = info.ctx->layout();
    same_layout = saved_layout.at("dp") == L.dp && saved_layout.at("tp") == L.tp &&
                  saved_layout.at("pp") == L.pp;
    if (same_layout) {
      const json rng = json::parse(r.meta_string("rng_dropout_offsets"));
      set_dropout_offsets(model, rng.at(std::to_string(world.rank())).get<std::string>());
    }
  } catch (const std::exception& e) {  // trident::Error, and JSON errors of a foreign file
    error = e.what();
  }
  if (any_rank_failed(world, error, o.program)) return -1;
  std::vector<int64_t> rank_bytes(static_cast<size_t>(world.size()));
  world.all_gather(&bytes, rank_bytes.data(), 1, DType::I64);
  if (world.rank() == 0) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string per_rank;
    for (int64_t b : rank_bytes) per_rank += " " + std::to_string(b);
    std::printf("resumed from %s at step %lld in %.2f s (tensor bytes read by rank:%s)%s\n",
                path.c_str(), static_cast<long long>(step), secs, per_rank.c_str(),
                same_layout ? "" : " (resharded to this layout; dropout streams restart)");
  }
  return step;
}

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void restore_default_signal_handlers() {
  std::signal(SIGUSR1, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

int preemption_signal() {
  return static_cast<int>(g_signal);
}

bool any_rank_failed(Communicator& world, const std::string& error, const std::string& program) {
  int32_t first_bad = error.empty() ? world.size() : world.rank();
  world.all_reduce(&first_bad, 1, DType::I32, ReduceOp::Min);
  if (first_bad < world.size() && world.rank() == first_bad) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), error.c_str());
  }
  return first_bad < world.size();
}

StepVerdict agree_on_step(Communicator& world, bool local_non_finite) {
  int32_t flags[2] = {local_non_finite ? 1 : 0, preemption_signal()};
  world.all_reduce(flags, 2, DType::I32, ReduceOp::Max);
  return {flags[0] != 0, flags[1]};
}

}  // namespace trident::train
