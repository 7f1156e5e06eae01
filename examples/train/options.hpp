// trident-train's options, filled by CLI11 in main.cpp.
#pragma once
#include <cstdint>
#include <string>

namespace trident::train {

struct Options {
  std::string mode = "train";  // train | eval | sample
  // model
  std::string model = "tiny";  // a name of the model registry (models/builtin_models.hpp)
  int64_t vocab = 0, block = 0, layers = 0, heads = 0, width = 0;  // 0 = preset's
  // Rows of the embedding / LM head: -1 = automatic (GPT-2's 50257 padded to 50304 on a GPU,
  // a --load file's own padding, none otherwise), 0 = none, else at least the vocabulary
  // (padding columns are masked out of the loss and sampling).
  int64_t padded_vocab = -1;
  float dropout = 0.0f;
  // data and batch
  std::string data;      // empty = built-in addition data set
  std::string val_data;  // empty = the last 10% of --data
  bool shuffle = true;   // --data windows in a new seeded order every epoch (validation in order)
  int64_t batch = 16, seq = 64;  // batch: sequences per micro-batch on each data-parallel rank
  int64_t steps = 600;
  // parallelism: world = dp x pp x tp; global batch = dp x micro_batches x batch sequences
  int dp = 0, tp = 1, pp = 1;  // dp 0: world / (tp x pp)
  int64_t micro_batches = 1;
  int zero = 0;  // 1: ZeRO-1 sharded optimizer state
  std::string schedule = "1f1b";
  bool no_overlap = false;
  double bucket_mb = 25.0;
  double comm_timeout_s = 300.0;
  std::string comm = "auto";  // auto (NCCL on GPUs, MPI on the CPU) | mpi | nccl
  // optimizer
  std::string optimizer = "adamw";
  float lr = 3e-3f, min_lr = 3e-4f;
  int64_t warmup = 30;
  float weight_decay = 0.1f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float momentum = 0.9f;
  bool nesterov = false;
  float grad_clip = 1.0f;  // 0 = off
  // run
  uint64_t seed = 1337;
  std::string device = "cpu";
  std::string precision = "fp32";  // fp32 | bf16 (bf16 compute, f32 master weights and state)
  int threads = 0;                 // 0 = OpenMP's default
  int64_t log_interval = 25;
  int64_t eval_interval = 0;  // 0 = only at the end
  int64_t eval_batches = 0;   // global batches per validation; 0 = about 20 x 1024 tokens
  std::string out_dir = "runs/default";
  bool cuda_graphs = false;  // capture the step into a CUDA graph, replay it (dp/tp: NCCL)
  std::string trace;  // Chrome trace JSON: FILE for rank 0, FILE.rank<N>.json (see trace.hpp)
  // eval / sample
  std::string load;  // Trident weights (.safetensors) to start from
  // checkpoints and faults (see checkpointing.hpp)
  std::string checkpoint_dir;       // empty: no checkpoints
  int64_t checkpoint_every = 0;     // steps between checkpoints (0: at the end and on preemption)
  int keep_checkpoints = 3;         // newest kept (0: all)
  bool resume = false;              // continue from the newest checkpoint in checkpoint_dir
  std::string resume_from;          // or from this file
  std::string nan_policy = "stop";  // stop | skip: a non-finite loss or gradient norm
  int64_t fault_nan_step = 0;       // testing: report a NaN loss at this step (1-based)
  std::string hf;                   // Hugging Face GPT-2 directory to start from
  int64_t eval_windows = 8;
  std::string prompt = "12+34=";
  int64_t sample_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
};

int run_train(const Options& opt);
int run_eval(const Options& opt);
int run_sample(const Options& opt);

}  // namespace trident::train
