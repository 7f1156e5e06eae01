#include "trident/train/callbacks.hpp"

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <iomanip>

#include "trident/core/error.hpp"
#include "trident/trace/trace.hpp"

namespace trident::train {

std::string human_bytes(size_t b) {
  char buf[32];
  if (b >= (size_t(1) << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  }
  return buf;
}

// --- ConsoleLog

void ConsoleLog::on_train_begin(const Trainer& t, int64_t) {
  if (!t.is_logging_rank()) return;
  const TrainerOptions& o = t.options();
  const ParallelLayout& L = t.context().layout();
  // A progress bar only for an interactive single process (mpirun gives ranks a pty too).
  tty_ = t.world().size() == 1 && isatty(STDOUT_FILENO) != 0;
  if (banner_.empty()) {
    std::printf("%s: %s on %s\n", o.program.c_str(), t.model().describe().c_str(),
                t.model().device().str().c_str());
  } else {
    std::printf("%s\n", banner_.c_str());
  }
  std::printf("layout: dp %d x pp %d x tp %d on %d ranks%s%s\n", L.dp, L.pp, L.tp, t.world().size(),
              o.zero ? ", ZeRO-1" : "", L.pp > 1 ? (", " + o.schedule + " schedule").c_str() : "");
  std::printf("data: %s\n", t.data_description().c_str());
  std::printf(
      "global batch %lld sequences (dp %lld x %lld micro-batches x %lld) of %lld tokens, "
      "%lld steps, %s lr %.3g (warmup %lld, cosine to %.3g)\n",
      static_cast<long long>(t.sequences_per_step()), static_cast<long long>(L.dp),
      static_cast<long long>(o.micro_batches), static_cast<long long>(o.batch),
      static_cast<long long>(o.seq), static_cast<long long>(o.steps),
      o.zero ? "zero-adamw" : o.optimizer.c_str(), o.lr, static_cast<long long>(o.warmup),
      o.min_lr);
  std::fflush(stdout);
}

void ConsoleLog::on_step_end(const Trainer& t, const StepMetrics& r) {
  win_time_ += r.step_s;
  win_comm_ += r.exposed_comm_s;
  win_bubble_ += r.bubble_s;
  ++win_steps_;
  const int64_t steps = t.options().steps;
  if (t.is_logging_rank() && r.log_line) {
    if (tty_) std::printf("\r\033[K");
    const double n = static_cast<double>(win_steps_);
    std::printf(
        "step %5lld/%lld | loss %.4f | lr %.3e | gnorm %.3f | %8.0f tok/s | %7.1f "
        "ms/step (comm %.1f, bubble %.1f) | peak mem %s%s\n",
        static_cast<long long>(r.step), static_cast<long long>(steps), r.loss, r.lr, r.grad_norm,
        r.tokens_per_step * n / win_time_, 1000.0 * win_time_ / n, 1000.0 * win_comm_ / n,
        1000.0 * win_bubble_ / n, human_bytes(r.peak_mem_bytes).c_str(),
        // MFU on GPUs: the job's model FLOP/s over its ranks' dense peak.
        r.peak_flops > 0 && r.flops_per_step > 0
            ? str_cat(" | MFU ", std::setprecision(3),
                      100.0 * r.flops_per_step * n / win_time_ / r.peak_flops, "%")
                  .c_str()
            : "");
  } else if (t.is_logging_rank() && tty_) {
    const int width = 30;
    const int filled = static_cast<int>(width * r.step / std::max<int64_t>(steps, 1));
    std::printf("\r\033[K[%s%s] %lld/%lld loss %.4f", std::string(filled, '#').c_str(),
                std::string(width - filled, '.').c_str(), static_cast<long long>(r.step),
                static_cast<long long>(steps), r.loss);
  }
  if (r.log_line) win_time_ = win_comm_ = win_bubble_ = 0, win_steps_ = 0;
  if (t.is_logging_rank()) std::fflush(stdout);
}

void ConsoleLog::on_validation(const Trainer& t, int64_t step, double val) {
  if (t.is_logging_rank() && step < t.options().steps)
    std::printf("step %5lld | val loss %.4f\n", static_cast<long long>(step), val);
}

void ConsoleLog::on_checkpoint(const Trainer& t, int64_t, const std::string& path, double secs,
                               const std::vector<int64_t>& rank_bytes) {
  if (!t.is_logging_rank()) return;
  std::printf("checkpoint written to %s in %.2f s", path.c_str(), secs);
  if (!rank_bytes.empty()) {  // the parallel writer: what each rank wrote itself
    std::printf(" (tensor bytes written by rank:");
    for (int64_t b : rank_bytes) std::printf(" %lld", static_cast<long long>(b));
    std::printf(")");
  }
  std::printf("\n");
}

void ConsoleLog::on_nonfinite(const Trainer& t, const StepMetrics& r, bool stopping) {
  if (!t.is_logging_rank()) return;
  if (stopping) {
    std::fprintf(stderr,
                 "%s: error: step %lld: the loss (%g) or gradient norm (%g) "
                 "is not finite; stopping (lower --lr, enable --grad-clip, or --nan-policy "
                 "skip)\n",
                 t.options().program.c_str(), static_cast<long long>(r.step), r.loss, r.grad_norm);
  } else {
    std::printf(
        "step %5lld | loss %g, gradient norm %g: not finite, update skipped "
        "(--nan-policy skip)\n",
        static_cast<long long>(r.step), r.loss, r.grad_norm);
  }
}

void ConsoleLog::on_preempted(const Trainer& t, int64_t step, int signal, const std::string& path) {
  if (!t.is_logging_rank()) return;
  std::printf(
      "preempted by %s at step %lld: checkpoint %s written, exiting (resume with "
      "--resume --checkpoint-dir %s)\n",
      signal == SIGUSR1 ? "SIGUSR1" : "SIGTERM", static_cast<long long>(step), path.c_str(),
      t.options().checkpoint_dir.c_str());
  std::fflush(stdout);
}

void ConsoleLog::on_train_end(const Trainer& t, const TrainResult& r) {
  if (!t.is_logging_rank()) return;
  if (!r.trace_path.empty()) {
    const int n = t.world().size();
    std::printf("trace written to %s%s\n", r.trace_path.c_str(),
                n > 1 ? str_cat(" and ", trace::trace_path_for_rank(t.options().trace, 1),
                                " .. rank", n - 1)
                            .c_str()
                      : "");
  }
  std::printf("done in %.1f s | final train loss %.4f | val loss %.4f", r.seconds,
              r.final_train_loss, r.val_loss);
  if (r.loss_floor >= 0) std::printf(" | best possible %.4f", r.loss_floor);
  std::printf("\n");
  if (!r.weights_path.empty()) std::printf("weights written to %s\n", r.weights_path.c_str());
  std::fflush(stdout);
}

// --- MetricsJsonl

MetricsJsonl::~MetricsJsonl() {
  close();
}

void MetricsJsonl::close() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
}

void MetricsJsonl::on_train_begin(const Trainer& t, int64_t start_step) {
  if (!t.is_logging_rank()) return;
  std::filesystem::create_directories(out_dir_);
  file_ = std::fopen((out_dir_ + "/metrics.jsonl").c_str(), start_step > 0 ? "a" : "w");
  TRIDENT_CHECK(file_ != nullptr, "cannot write ", out_dir_, "/metrics.jsonl");
  // The first line of a run (and of each resume): what ran, resolved, and with which version.
  nlohmann::json head = config_;
  head["start_step"] = start_step;
  std::fprintf(file_, "%s\n", nlohmann::json{{"config", head}}.dump().c_str());
  std::fflush(file_);
}

void MetricsJsonl::on_step_end(const Trainer&, const StepMetrics& r) {
  if (file_ == nullptr) return;
  // mfu: model FLOPs per second over the job's peak; null where the peak is unknown (CPU).
  // 17 digits: a resumed run's losses can be compared bit for bit; JSON has no NaN.
  const std::string loss_json =
      std::isfinite(r.loss) ? str_cat(std::setprecision(17), r.loss) : "null";
  const std::string mfu = r.peak_flops > 0 && r.flops_per_step > 0
                              ? str_cat(r.flops_per_step / r.step_s / r.peak_flops)
                              : std::string("null");
  const std::string norm_json = r.have_norm && std::isfinite(r.grad_norm)
                                    ? str_cat(std::setprecision(9), r.grad_norm)
                                    : "null";
  const std::string syncs = r.host_syncs >= 0 ? str_cat(", \"host_syncs\": ", r.host_syncs,
                                                        ", \"device_mallocs\": ", r.device_mallocs)
                                              : std::string();
  std::fprintf(file_,
               "{\"step\": %lld, \"loss\": %s, \"grad_norm\": %s, \"lr\": %.9g, "
               "\"tokens_per_s\": %.1f, "
               "\"step_ms\": %.3f, \"exposed_comm_ms\": %.3f, \"bubble_ms\": %.3f, "
               "\"peak_mem_bytes\": %zu, \"mfu\": %s%s}\n",
               static_cast<long long>(r.step), loss_json.c_str(), norm_json.c_str(),
               static_cast<double>(r.lr), r.tokens_per_step / r.step_s, 1000 * r.step_s,
               1000 * r.exposed_comm_s, 1000 * r.bubble_s, r.peak_mem_bytes, mfu.c_str(),
               syncs.c_str());
  std::fflush(file_);
}

void MetricsJsonl::on_validation(const Trainer&, int64_t step, double val) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "{\"step\": %lld, \"val_loss\": %.9g}\n", static_cast<long long>(step), val);
  std::fflush(file_);
}

void MetricsJsonl::on_preempted(const Trainer&, int64_t, int, const std::string&) {
  close();
}

void MetricsJsonl::on_train_end(const Trainer&, const TrainResult& r) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "{\"final_val_loss\": %.9g}\n", r.val_loss);
  close();
}

}  // namespace trident::train
