// The trainer's standard callbacks: the console log (one line every log_interval steps, a
// progress bar on an interactive single process) and metrics.jsonl (one JSON object a step).
// Both act on world rank 0 only.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "trident/train/trainer.hpp"

namespace trident::train {

// Prints the run's banner, a line per log-interval step (loss, lr, gradient norm, tokens/s,
// step time split into exposed communication and pipeline bubble, peak memory, MFU on GPUs),
// validations, checkpoints, non-finite steps, preemption and the final summary.
class ConsoleLog final : public TrainerCallback {
 public:
  // `banner`: the first line ("trident-train: <model> on cpu"); `layout_note` is appended to
  // the layout line (e.g. ", ZeRO-1").
  explicit ConsoleLog(std::string banner = "") : banner_(std::move(banner)) {}
  void on_train_begin(const Trainer& t, int64_t start_step) override;
  void on_step_end(const Trainer& t, const StepMetrics& m) override;
  void on_validation(const Trainer& t, int64_t step, double val_loss) override;
  void on_checkpoint(const Trainer& t, int64_t step, const std::string& path, double seconds,
                     const std::vector<int64_t>& rank_bytes) override;
  void on_nonfinite(const Trainer& t, const StepMetrics& m, bool stopping) override;
  void on_preempted(const Trainer& t, int64_t step, int signal,
                    const std::string& checkpoint) override;
  void on_train_end(const Trainer& t, const TrainResult& r) override;

 private:
  std::string banner_;
  bool tty_ = false;
  double win_time_ = 0, win_comm_ = 0, win_bubble_ = 0;
  int64_t win_steps_ = 0;
};

// <out_dir>/metrics.jsonl: first line {"config": ...} (the given configuration plus version and
// start_step), then {"step", "loss", "grad_norm", "lr", "tokens_per_s", "step_ms",
// "exposed_comm_ms", "bubble_ms", "peak_mem_bytes", "mfu"} per step (loss with 17 digits, so
// resumed runs compare bit for bit; null where not finite or unknown), {"step", "val_loss"} per
// validation and {"final_val_loss"} at the end. Appends when the run resumes.
class MetricsJsonl final : public TrainerCallback {
 public:
  MetricsJsonl(std::string out_dir, nlohmann::json config)
      : out_dir_(std::move(out_dir)), config_(std::move(config)) {}
  ~MetricsJsonl() override;
  void on_train_begin(const Trainer& t, int64_t start_step) override;
  void on_step_end(const Trainer& t, const StepMetrics& m) override;
  void on_validation(const Trainer& t, int64_t step, double val_loss) override;
  void on_preempted(const Trainer& t, int64_t step, int signal,
                    const std::string& checkpoint) override;
  void on_train_end(const Trainer& t, const TrainResult& r) override;

 private:
  void close();
  std::string out_dir_;
  nlohmann::json config_;
  std::FILE* file_ = nullptr;
};

// "12.3 MiB", "1.25 GiB".
std::string human_bytes(size_t bytes);

}  // namespace trident::train
