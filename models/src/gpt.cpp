#include "trident/models/gpt.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "trident/core/ops.hpp"

namespace trident::models {

Block::Block(const GPTConfig& cfg, Generator& gen, const nn::InitOptions& init) {
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(cfg.n_embd, cfg.ln_eps, init));
  attn = register_module("attn", std::make_shared<nn::CausalSelfAttention>(
                                     cfg.n_embd, cfg.n_head, cfg.dropout, gen, init, proj_std));
  ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(cfg.n_embd, cfg.ln_eps, init));
  mlp = register_module("mlp",
                        std::make_shared<nn::MLP>(cfg.n_embd, cfg.dropout, gen, init, proj_std));
}

Tensor Block::forward(const Tensor& x) {
  Tensor h = x + attn->forward(ln1->forward(x));
  return h + mlp->forward(ln2->forward(h));
}

GPT::GPT(const GPTConfig& cfg, uint64_t seed, Device device) : cfg_(cfg) {
  cfg_.validate();
  Generator gen(seed);
  nn::InitOptions init;
  init.device = device;
  wte = register_module("wte", std::make_shared<nn::Embedding>(cfg.vocab_size, cfg.n_embd, gen,
                                                               init));
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(cfg.block_size, cfg.n_embd, gen,
                                                               init));
  drop = register_module("drop", std::make_shared<nn::Dropout>(cfg.dropout, seed ^ 0xE3B0ull));
  blocks = register_module("blocks", std::make_shared<nn::Sequential>());
  for (int64_t i = 0; i < cfg.n_layer; ++i) blocks->push_back(std::make_shared<Block>(cfg, gen, init));
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(cfg.n_embd, cfg.ln_eps, init));
}

Tensor GPT::forward(const Tensor& ids) {
  TRIDENT_CHECK(ids.dim() == 2, "GPT: token ids must be (B, T), got ", ids.shape_str());
  const int64_t T = ids.size(1);
  TRIDENT_CHECK(T <= cfg_.block_size, "GPT: sequence length ", T,
                " is longer than the model's context of ", cfg_.block_size);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  std::iota(pos.begin(), pos.end(), 0);
  const Tensor pos_ids = Tensor::from_vector(pos, {T}, ids.device());
  Tensor x = drop->forward(wte->forward(ids) + wpe->forward(pos_ids));
  x = ln_f->forward(blocks->forward(x));
  return ops::linear(x, wte->weight);  // tied head
}

Tensor GPT::loss(const Tensor& ids, const Tensor& targets) {
  TRIDENT_CHECK(targets.shape() == ids.shape(), "GPT: targets ", targets.shape_str(),
                " do not match inputs ", ids.shape_str());
  return ops::cross_entropy(forward(ids), targets);
}

std::vector<int32_t> GPT::generate(std::vector<int32_t> tokens, int64_t n, double temperature,
                                   int64_t top_k, Generator& gen) {
  TRIDENT_CHECK(!tokens.empty(), "generate: the prompt needs at least one token");
  TRIDENT_CHECK(temperature > 0, "generate: temperature must be positive, got ", temperature);
  NoGradGuard no_grad;
  const bool was_training = is_training();
  eval();
  const Device dev = wte->weight.device();
  for (int64_t step = 0; step < n; ++step) {
    const int64_t start =
        std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - cfg_.block_size);
    std::vector<int32_t> ctx(tokens.begin() + start, tokens.end());
    const int64_t T = static_cast<int64_t>(ctx.size());
    const Tensor logits = forward(Tensor::from_vector(ctx, {1, T}, dev));
    std::vector<float> last = logits.slice(1, T - 1, T).to_vector<float>();
    std::vector<int32_t> order(last.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = top_k > 0 ? std::min<size_t>(static_cast<size_t>(top_k), last.size())
                               : last.size();
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](int32_t a, int32_t b) { return last[a] > last[b]; });
    std::vector<double> probs(k);
    const double mx = last[static_cast<size_t>(order[0])];
    double total = 0;
    for (size_t i = 0; i < k; ++i) {
      probs[i] = std::exp((last[static_cast<size_t>(order[i])] - mx) / temperature);
      total += probs[i];
    }
    double r = gen.uniform() * total;
    size_t pick = k - 1;
    for (size_t i = 0; i < k; ++i) {
      if ((r -= probs[i]) < 0) {
        pick = i;
        break;
      }
    }
    tokens.push_back(order[pick]);
  }
  train(was_training);
  return tokens;
}

void GPT::load_named(const std::map<std::string, std::vector<float>>& values) {
  for (auto& [name, p] : named_parameters()) {
    auto it = values.find(name);
    TRIDENT_CHECK(it != values.end(), "weights have no tensor for parameter '", name, "'");
    TRIDENT_CHECK(static_cast<int64_t>(it->second.size()) == p.numel(), "parameter '", name,
                  "' has ", p.numel(), " elements ", p.shape_str(), " but the weights hold ",
                  it->second.size());
    Tensor src = Tensor::from_vector(it->second, p.shape());
    p.copy_(src);
  }
}

}  // namespace trident::models
