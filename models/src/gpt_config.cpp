#include "trident/models/gpt_config.hpp"

#include "trident/core/error.hpp"

namespace trident::models {

void GPTConfig::validate() const {
  TRIDENT_CHECK(vocab_size > 0, "vocabulary size must be positive, got ", vocab_size);
  TRIDENT_CHECK(padded_vocab_size == 0 || padded_vocab_size >= vocab_size,
                "the padded vocabulary of ", padded_vocab_size,
                " is smaller than the vocabulary of ", vocab_size,
                " (--padded-vocab must be 0 or at least --vocab)");
  TRIDENT_CHECK(block_size > 0, "block size (context length) must be positive, got ", block_size);
  TRIDENT_CHECK(n_layer > 0, "number of layers must be positive, got ", n_layer);
  TRIDENT_CHECK(n_head > 0, "number of heads must be positive, got ", n_head);
  TRIDENT_CHECK(n_embd > 0, "embedding width must be positive, got ", n_embd);
  TRIDENT_CHECK(n_embd % n_head == 0, "--heads ", n_head, " does not divide the embedding width ",
                n_embd, " (choose a width that is a multiple of the head count)");
  TRIDENT_CHECK(dropout >= 0.0f && dropout < 1.0f, "dropout must be in [0, 1), got ", dropout);
}

int64_t GPTConfig::num_parameters() const {
  const int64_t C = n_embd;
  const int64_t per_block = 2 * C                // ln1
                            + 3 * C * C + 3 * C  // qkv
                            + C * C + C          // proj
                            + 2 * C              // ln2
                            + 4 * C * C + 4 * C  // fc
                            + 4 * C * C + C;     // mlp proj
  return table_rows() * C + block_size * C + n_layer * per_block + 2 * C;
}

double GPTConfig::flops_per_token(int64_t seq_len) const {
  // 6 FLOPs per parameter per token (forward 2, backward 4), embeddings' lookups excluded
  // but the tied head's matmul included, plus attention's QK^T and PV: 12 * L * C * T.
  const double n = static_cast<double>(num_parameters() - block_size * n_embd);
  return 6.0 * n + 12.0 * static_cast<double>(n_layer * n_embd * seq_len);
}

std::string GPTConfig::describe() const {
  return str_cat("GPT(vocab=", vocab_size,
                 padded_vocab_size > 0 ? str_cat(" padded to ", padded_vocab_size) : "",
                 ", block=", block_size, ", layers=", n_layer, ", heads=", n_head,
                 ", width=", n_embd, ", params=", num_parameters(), ")");
}

GPTConfig GPTConfig::preset(const std::string& name) {
  GPTConfig c;
  if (name == "tiny") {
    c.vocab_size = 256;  // byte-level, for the built-in data set
    c.block_size = 64;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_embd = 128;
  } else if (name == "gpt2" || name == "gpt2-124M") {
    c.n_layer = 12, c.n_head = 12, c.n_embd = 768;
  } else if (name == "gpt2-medium" || name == "gpt2-350M") {
    c.n_layer = 24, c.n_head = 16, c.n_embd = 1024;
  } else if (name == "gpt2-large" || name == "gpt2-774M") {
    c.n_layer = 36, c.n_head = 20, c.n_embd = 1280;
  } else if (name == "gpt2-xl" || name == "gpt2-1.5B") {
    c.n_layer = 48, c.n_head = 25, c.n_embd = 1600;
  } else {
    std::string known;
    for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(str_cat("unknown model preset '", name, "' (known: ", known, ")"));
  }
  return c;
}

std::vector<std::string> GPTConfig::preset_names() {
  return {"tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"};
}

}  // namespace trident::models
