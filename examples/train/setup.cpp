#include "setup.hpp"

#include <cstdio>

#include "trident/core/cuda.hpp"
#include "trident/io/data.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/hf_gpt2.hpp"
#include "trident/parallel/launch_env.hpp"

namespace trident::train {

namespace {
constexpr int64_t kGpt2Vocab = 50257;  // the GPT-2 presets' and Hugging Face GPT-2's vocabulary
}  // namespace

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

void check_sizes(const Options& opt, const models::GPTConfig& cfg) {
  TRIDENT_CHECK(opt.seq > 0 && opt.batch > 0, "--batch and --seq must be positive");
  TRIDENT_CHECK(opt.seq <= cfg.block_size, "--seq ", opt.seq,
                " is longer than the model's context of ", cfg.block_size,
                " tokens (raise --block or lower --seq)");
  TRIDENT_CHECK(opt.steps >= 0, "--steps must not be negative");
  TRIDENT_CHECK(opt.log_interval > 0, "--log-interval must be positive");
  TRIDENT_CHECK(opt.micro_batches > 0, "--micro-batches must be positive");
}

models::GPTConfig resolve_model_config(const Options& opt) {
  TRIDENT_CHECK(opt.load.empty() || opt.hf.empty(), "give --load or --hf, not both");
  models::GPTConfig c;
  if (!opt.hf.empty()) {
    c = models::read_hf_gpt2_config(opt.hf + "/config.json");
  } else if (!opt.load.empty()) {
    auto f = SafetensorsFile::open(opt.load);
    const auto& m = f.metadata();
    auto get = [&](const char* key) {
      auto it = m.find(key);
      TRIDENT_CHECK(it != m.end(), opt.load, ": no '", key,
                    "' in the metadata: not a model written by trident-train");
      return std::stoll(it->second);
    };
    c.vocab_size = get("vocab_size");
    if (m.count("padded_vocab_size") != 0) c.padded_vocab_size = get("padded_vocab_size");
    c.block_size = get("block_size");
    c.n_layer = get("n_layer");
    c.n_head = get("n_head");
    c.n_embd = get("n_embd");
  } else {
    c = opt.model_config();
  }
  c.dropout = opt.dropout;
  if (opt.padded_vocab >= 0) {
    c.padded_vocab_size = opt.padded_vocab;
  } else if (c.padded_vocab_size == 0 && c.vocab_size == kGpt2Vocab &&
             Device::parse(opt.device).is_cuda()) {
    // GPT-2 on a GPU: the LM head's leading dimension a multiple of 128 (llm.c's padding).
    c.padded_vocab_size = (kGpt2Vocab + 127) / 128 * 128;
  }
  c.validate();
  return c;
}

std::string human_bytes(size_t b) {
  char buf[32];
  if (b >= (size_t(1) << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  }
  return buf;
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
