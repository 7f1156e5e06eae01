#include "setup.hpp"

#include <cstdio>

#include "trident/core/cuda.hpp"
#include "trident/io/data.hpp"
#include "trident/parallel/launch_env.hpp"

namespace trident::train {

DataSplit load_data(const Options& opt, int64_t vocab) {
  DataSplit d;
  if (opt.data.empty()) {
    TRIDENT_CHECK(opt.val_data.empty(),
                  "--val-data needs --data (the built-in data set holds "
                  "its own validation lines)");
    TRIDENT_CHECK(vocab >= 128,
                  "the built-in data set is byte-level text: it needs a vocabulary "
                  "of at least 128 tokens, the model has ",
                  vocab);
    // i.i.d. lines already: read in order, whatever --shuffle says.
    auto train = data::make_addition_dataset(300000, opt.seed);
    auto val = data::make_addition_dataset(30000, opt.seed + 0x5EED);
    d.description = "built-in addition data set (" + std::to_string(train.size()) + " train / " +
                    std::to_string(val.size()) + " val characters, read in order)";
    d.train = {data::memory_token_source(std::move(train), "built-in data", vocab), false, 0};
    d.val = {data::memory_token_source(std::move(val), "built-in validation data", vocab), false,
             0};
    d.builtin = true;
    return d;
  }
  data::TokenSourcePtr train = data::open_token_source(opt.data, vocab), val;
  if (!opt.val_data.empty()) {
    val = data::open_token_source(opt.val_data, vocab);
  } else {
    const int64_t n = train->size(), cut = n - n / 10;  // the last 10% is held out
    val = data::slice_token_source(train, cut, n);
    train = data::slice_token_source(train, 0, cut);
  }
  for (const auto* s : {&train, &val}) {
    const bool is_val = s == &val;
    TRIDENT_CHECK((*s)->size() >= opt.seq + 1, (*s)->name(), ": its ",
                  is_val ? "validation" : "training", " part holds ", (*s)->size(),
                  " tokens, fewer than one window of --seq ", opt.seq, " + 1",
                  is_val && opt.val_data.empty() ? " (give --val-data)" : "");
    data::verify_token_source(**s);
  }
  const std::string tok = train->tokenizer();
  d.description =
      str_cat(opt.data, tok.empty() ? "" : " (" + tok + " tokens)", ": ", train->size(),
              " train / ", val->size(), " val tokens",
              opt.val_data.empty() ? " (last 10%)" : " from " + opt.val_data, ", ",
              opt.shuffle ? "shuffled every epoch (seed " + std::to_string(opt.seed) + ")"
                          : "read in order");
  d.train = {train, opt.shuffle, opt.seed};
  d.val = {val, false, 0};
  return d;
}

void check_sizes(const Options& opt, int64_t max_seq_len) {
  TRIDENT_CHECK(opt.seq > 0 && opt.batch > 0, "--batch and --seq must be positive");
  TRIDENT_CHECK(opt.seq <= max_seq_len, "--seq ", opt.seq,
                " is longer than the model's context of ", max_seq_len,
                " tokens (raise --block or lower --seq)");
  TRIDENT_CHECK(opt.steps >= 0, "--steps must not be negative");
  TRIDENT_CHECK(opt.log_interval > 0, "--log-interval must be positive");
  TRIDENT_CHECK(opt.micro_batches > 0, "--micro-batches must be positive");
}

ModelArgs model_args(const Options& opt) {
  ModelArgs a;
  a.name = opt.model;
  a.vocab = opt.vocab;
  a.block = opt.block;
  a.layers = opt.layers;
  a.heads = opt.heads;
  a.width = opt.width;
  a.padded_vocab = opt.padded_vocab;
  a.dropout = opt.dropout;
  a.seed = opt.seed;
  a.device = resolve_device(opt.device);
  a.compute_dtype = opt.precision == "bf16" ? DType::BF16 : DType::F32;
  a.load = opt.load;
  a.hf = opt.hf;
  return a;
}

bool any_rank_failed(Communicator& world, const std::string& error) {
  int32_t first_bad = error.empty() ? world.size() : world.rank();
  world.all_reduce(&first_bad, 1, DType::I32, ReduceOp::Min);
  if (first_bad < world.size() && world.rank() == first_bad) {
    std::fprintf(stderr, "trident-train: error: %s\n", error.c_str());
  }
  return first_bad < world.size();
}

Device resolve_device(const std::string& flag) {
  Device d = Device::parse(flag);
  if (d.is_cuda() && flag.find(':') == std::string::npos) {
    const int count = cuda_device_count_or_zero();
    if (count > 0) d.index = discover_launch_env().local_rank % count;
  }
  return d;
}

double peak_flops_per_rank(Device device, const std::string& precision) {
  if (!device.is_cuda()) return 0.0;
  const CudaDeviceInfo info = cuda_device_info(device.index);
  return precision == "bf16" ? info.peak_bf16_flops : info.peak_fp32_flops;
}

}  // namespace trident::train
