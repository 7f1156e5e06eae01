// trident-train's training mode: a thin layer over the library trainer (trident/train/trainer.hpp).
// It turns the flags into a model (by name, through the model registry), a layout, data and
// TrainerOptions, checks everything that can be wrong before any collective (bad input is
// reported once, by the lowest rank that found it), builds the communicators and the model,
// and hands them to train::Trainer with the console log and metrics.jsonl as callbacks.
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>

#include "setup.hpp"
#include "trident/core/backend.hpp"
#include "trident/models/builtin_models.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/process_group_factory.hpp"
#include "trident/train/callbacks.hpp"
#include "trident/train/trainer.hpp"

namespace trident::train {

namespace {

struct Plan {
  ParallelLayout layout;
  std::unique_ptr<ModelBuilder> model;
  DataSplit data;
};

// Everything that can be wrong with the flags or the inputs, checked before any collective.
Plan validate(const Options& opt, int world_size) {
  Plan p;
  p.layout = resolve_layout(world_size, opt.dp, opt.tp, opt.pp);
  p.model = models::builtin_models().resolve(model_args(opt));
  check_sizes(opt, p.model->max_seq_len());
  p.model->check_layout(p.layout);
  TRIDENT_CHECK(opt.zero == 0 || opt.optimizer == "adamw",
                "--zero 1 shards AdamW state: use --optimizer adamw");
  TRIDENT_CHECK(opt.bucket_mb > 0, "--bucket-mb must be positive");
  TRIDENT_CHECK(opt.nan_policy == "stop" || opt.nan_policy == "skip",
                "--nan-policy must be stop or skip, got '", opt.nan_policy, "'");
  TRIDENT_CHECK(opt.checkpoint_every >= 0 && opt.keep_checkpoints >= 0 && opt.fault_nan_step >= 0,
                "--checkpoint-every, --keep-checkpoints and --fault-nan-step must not be negative");
  TRIDENT_CHECK(opt.resume_from.empty() || std::filesystem::exists(opt.resume_from),
                "--resume-from ", opt.resume_from, ": no such file");
  const Device device = resolve_device(opt.device);
  backend_for(device);                     // a CUDA device without a CUDA build or GPU fails here
  resolve_comm_backend(opt.comm, device);  // --comm nccl without a GPU or NCCL fails here
  if (opt.cuda_graphs) {
    check_cuda_graphs_supported(device, p.layout, world_size,
                                resolve_comm_backend(opt.comm, device) == CommBackend::Nccl,
                                opt.zero == 1, !opt.trace.empty());
  }
  p.data = load_data(opt, p.model->vocab_size());
  return p;
}

TrainerOptions trainer_options(const Options& o) {
  TrainerOptions t;
  t.batch = o.batch;
  t.seq = o.seq;
  t.micro_batches = o.micro_batches;
  t.steps = o.steps;
  t.schedule = o.schedule;
  t.overlap = !o.no_overlap;
  t.bucket_mb = o.bucket_mb;
  t.zero = o.zero == 1;
  t.optimizer = o.optimizer;
  t.lr = o.lr;
  t.min_lr = o.min_lr;
  t.warmup = o.warmup;
  t.weight_decay = o.weight_decay;
  t.beta1 = o.beta1;
  t.beta2 = o.beta2;
  t.eps = o.eps;
  t.momentum = o.momentum;
  t.nesterov = o.nesterov;
  t.grad_clip = o.grad_clip;
  t.nan_policy = o.nan_policy;
  t.fault_nan_step = o.fault_nan_step;
  t.eval_interval = o.eval_interval;
  t.eval_batches = o.eval_batches;
  // Periodic and final checkpoints when asked; a preemption signal always writes one.
  t.checkpoint_dir = o.checkpoint_dir.empty() ? o.out_dir + "/checkpoints" : o.checkpoint_dir;
  t.checkpoints = !o.checkpoint_dir.empty() || o.checkpoint_every > 0;
  t.checkpoint_every = o.checkpoint_every;
  t.keep_checkpoints = o.keep_checkpoints;
  t.resume = o.resume;
  t.resume_from = o.resume_from;
  t.log_interval = o.log_interval;
  t.trace = o.trace;
  t.cuda_graphs = o.cuda_graphs;
  t.weights_path = o.out_dir + "/model.safetensors";
  t.seed = o.seed;
  t.peak_flops_per_rank = peak_flops_per_rank(resolve_device(o.device), o.precision);
  t.program = "trident-train";
  return t;
}

// metrics.jsonl's first line: what ran, resolved. Float options as the user wrote them (0.95,
// not 0.949999988079071).
nlohmann::json run_config(const Options& opt, const TrainableModel& model, const ParallelLayout& L,
                          int world_size, const std::string& data) {
  const auto f = [](float x) { return std::stod(str_cat(std::setprecision(7), x)); };
  nlohmann::json head;
  head["version"] = TRIDENT_VERSION;
  head["model"] = model.config();
  head["model"]["preset"] = opt.model;
  head["layout"] = {{"world", world_size},
                    {"dp", L.dp},
                    {"tp", L.tp},
                    {"pp", L.pp},
                    {"micro_batches", opt.micro_batches},
                    {"zero", opt.zero},
                    {"schedule", opt.schedule},
                    {"comm", opt.comm},
                    {"device", model.device().str()},
                    {"precision", opt.precision},
                    {"threads", opt.threads}};
  head["data"] = {{"description", data},
                  {"batch", opt.batch},
                  {"seq", opt.seq},
                  {"global_tokens_per_step", L.dp * opt.micro_batches * opt.batch * opt.seq},
                  {"shuffle", opt.shuffle}};
  head["optimizer"] = {{"name", opt.optimizer},    {"lr", f(opt.lr)},
                       {"min_lr", f(opt.min_lr)},  {"warmup", opt.warmup},
                       {"steps", opt.steps},       {"weight_decay", f(opt.weight_decay)},
                       {"beta1", f(opt.beta1)},    {"beta2", f(opt.beta2)},
                       {"eps", f(opt.eps)},        {"momentum", f(opt.momentum)},
                       {"nesterov", opt.nesterov}, {"grad_clip", f(opt.grad_clip)}};
  head["run"] = {{"seed", opt.seed},
                 {"out_dir", opt.out_dir},
                 {"checkpoint_dir", opt.checkpoint_dir},
                 {"nan_policy", opt.nan_policy}};
  return head;
}

}  // namespace

int run_train(const Options& opt) {
  auto world = MpiCommunicator::world();
  world->set_timeout(std::chrono::milliseconds(static_cast<int64_t>(opt.comm_timeout_s * 1000)));
  // Bad input is found on every rank alike; the lowest rank that found it reports it once.
  Plan plan;
  std::string error;
  try {
    plan = validate(opt, world->size());
  } catch (const Error& e) {
    error = e.what();
  }
  if (any_rank_failed(*world, error)) return 1;

  const Topology topo(world->rank(), world->size(), plan.layout);
  const Device device = resolve_device(opt.device);
  // MPI for the CPU, NCCL for GPUs (--comm overrides); host scalars always go through MPI.
  const auto groups = make_comm_groups(*world, topo, device, opt.comm);
  groups->set_timeout(world->timeout());
  const ParallelContext ctx(*groups);
  const std::unique_ptr<TrainableModel> model = plan.model->build(&ctx);

  Trainer trainer(*model, ctx, *world, trainer_options(opt));
  trainer.add_callback(std::make_shared<ConsoleLog>(
      str_cat("trident-train: ", model->describe(), " on ", device.str(),
              opt.precision == "bf16" ? ", bf16 mixed precision" : "")));
  trainer.add_callback(std::make_shared<MetricsJsonl>(
      opt.out_dir, run_config(opt, *model, plan.layout, world->size(), plan.data.description)));
  TrainData data{std::move(plan.data.train), std::move(plan.data.val), plan.data.description,
                 plan.data.builtin ? data::addition_dataset_loss_floor() : -1.0};
  const TrainResult result = trainer.fit(std::move(data));
  if (opt.cuda_graphs && world->rank() == 0 && result.exit_code == 0) {
    std::printf("cuda graphs: %lld captured, %lld launches\n",
                static_cast<long long>(result.graph_captures),
                static_cast<long long>(result.graph_launches));
  }
  return result.exit_code;
}

}  // namespace trident::train
