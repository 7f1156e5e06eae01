#include "trident/models/llama_config.hpp"

#include "trident/core/error.hpp"

namespace trident::models {

void LlamaConfig::validate() const {
  TRIDENT_CHECK(vocab_size > 0, "vocabulary size must be positive, got ", vocab_size);
  TRIDENT_CHECK(block_size > 0, "block size (context length) must be positive, got ", block_size);
  TRIDENT_CHECK(n_layer > 0, "number of layers must be positive, got ", n_layer);
  TRIDENT_CHECK(n_head > 0, "number of heads must be positive, got ", n_head);
  TRIDENT_CHECK(n_kv_head > 0, "number of key/value heads must be positive, got ", n_kv_head);
  TRIDENT_CHECK(n_embd > 0, "embedding width must be positive, got ", n_embd);
  TRIDENT_CHECK(ffn_hidden > 0, "MLP width must be positive, got ", ffn_hidden);
  TRIDENT_CHECK(n_embd % n_head == 0, "--heads ", n_head, " does not divide the embedding width ",
                n_embd, " (choose a width that is a multiple of the head count)");
  TRIDENT_CHECK(head_size() % 2 == 0, "rotary embeddings need an even head size, got ", head_size(),
                " (width ", n_embd, " / ", n_head, " heads)");
  TRIDENT_CHECK(n_head % n_kv_head == 0, "grouped-query attention: ", n_kv_head,
                " key/value heads do not divide ", n_head, " query heads");
  TRIDENT_CHECK(rope_theta > 0, "rope theta must be positive, got ", rope_theta);
  TRIDENT_CHECK(norm_eps > 0, "RMSNorm eps must be positive, got ", norm_eps);
}

void LlamaConfig::validate_tp(int tp) const {
  TRIDENT_CHECK(tp >= 1, "--tp must be at least 1, got ", tp);
  TRIDENT_CHECK(n_kv_head % tp == 0, "--tp ", tp, " does not divide the ", n_kv_head,
                " key/value heads (each tensor-parallel rank needs whole kv heads: choose --tp "
                "dividing ",
                n_kv_head, ")");
  TRIDENT_CHECK(n_head % tp == 0, "--tp ", tp, " does not divide ", n_head, " attention heads");
  TRIDENT_CHECK(ffn_hidden % tp == 0, "--tp ", tp, " does not divide the MLP width ", ffn_hidden);
  TRIDENT_CHECK(vocab_size % tp == 0, "--tp ", tp, " does not divide the vocabulary of ",
                vocab_size, " tokens");
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t C = n_embd, D = head_size();
  const int64_t per_layer = 2 * C                                     // two RMSNorms
                            + C * n_head * D + 2 * C * n_kv_head * D  // q, k, v
                            + n_head * D * C                          // o
                            + 3 * C * ffn_hidden;                     // gate, up, down
  return 2 * vocab_size * C + n_layer * per_layer + C;
}

double LlamaConfig::flops_per_token(int64_t seq_len) const {
  // 6 FLOPs per parameter per token, the embedding lookup excluded (the untied head's matmul
  // included), plus attention's QK^T and PV over all q heads: 12 * L * (H D) * T.
  const double n = static_cast<double>(num_parameters() - vocab_size * n_embd);
  return 6.0 * n + 12.0 * static_cast<double>(n_layer * n_head * head_size() * seq_len);
}

std::string LlamaConfig::describe() const {
  return str_cat("Llama(vocab=", vocab_size, ", block=", block_size, ", layers=", n_layer,
                 ", heads=", n_head, ", kv_heads=", n_kv_head, ", width=", n_embd,
                 ", ffn=", ffn_hidden, ", rope_theta=", rope_theta, ", params=", num_parameters(),
                 ")");
}

LlamaConfig LlamaConfig::preset(const std::string& name) {
  LlamaConfig c;  // defaults: Llama 3 8B
  if (name == "llama-tiny") {
    // Byte-level, for the built-in data set; ffn = 8/3 C rounded up to a multiple of 16.
    c.vocab_size = 256, c.block_size = 64, c.n_layer = 4, c.n_head = 4, c.n_kv_head = 2;
    c.n_embd = 64, c.ffn_hidden = 176, c.rope_theta = 10000.0;
  } else if (name == "llama-small") {
    c.vocab_size = 32000, c.block_size = 2048, c.n_layer = 12, c.n_head = 12, c.n_kv_head = 4;
    c.n_embd = 768, c.ffn_hidden = 2048;
  } else if (name == "llama3-8b") {
    // vocab 128256, width 4096, 32 layers, 32 heads, 8 kv heads, ffn 14336, theta 5e5.
  } else if (name == "llama3-70b") {
    c.n_layer = 80, c.n_head = 64, c.n_kv_head = 8, c.n_embd = 8192, c.ffn_hidden = 28672;
  } else {
    std::string known;
    for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(str_cat("unknown Llama preset '", name, "' (known: ", known, ")"));
  }
  return c;
}

std::vector<std::string> LlamaConfig::preset_names() {
  return {"llama-tiny", "llama-small", "llama3-8b", "llama3-70b"};
}

bool LlamaConfig::is_preset(const std::string& name) {
  for (const auto& n : preset_names())
    if (n == name) return true;
  return false;
}

std::string llama_hf_name(const std::string& ours) {
  return ours == "lm_head.weight" ? ours : "model." + ours;
}

}  // namespace trident::models
