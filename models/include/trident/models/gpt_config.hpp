// GPT-2 architecture sizes and the named presets.
//
// Parameters (names are stable; Linear weights are (out, in) as torch.nn.Linear):
//   wte.weight (Vp, C)           token embedding, tied to the output head (logits = x wte^T);
//                                Vp = table_rows(): the vocabulary, or its padded size
//   wpe.weight (block_size, C)   learned positions
//   blocks.{i}.ln1.{weight,bias} (C)
//   blocks.{i}.attn.qkv.weight (3C, C), .bias (3C)    fused q|k|v projection
//   blocks.{i}.attn.proj.weight (C, C), .bias (C)
//   blocks.{i}.ln2.{weight,bias} (C)
//   blocks.{i}.mlp.fc.weight (4C, C), .bias (4C)
//   blocks.{i}.mlp.proj.weight (C, 4C), .bias (C)
//   ln_f.{weight,bias} (C)
// Pre-LN blocks: x = x + attn(ln1(x)); x = x + mlp(ln2(x)); GELU is the tanh form; LayerNorm
// eps 1e-5; attention is causal with scale 1/sqrt(C/NH); loss is mean cross entropy.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace trident::models {

struct GPTConfig {
  int64_t vocab_size = 50257;  // the real vocabulary: token ids lie in [0, vocab_size)
  // Rows of wte, and columns of the logits, when the vocabulary is padded to a GPU-friendly size
  // (llm.c's 50304 = 393 x 128 for GPT-2); 0: no padding. Padding rows are never looked up, and
  // their logits are masked out of the loss (no probability mass, zero gradient) and sampling.
  int64_t padded_vocab_size = 0;
  int64_t block_size = 1024;  // maximum sequence length (rows of wpe)
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  float dropout = 0.0f;
  float ln_eps = 1e-5f;

  // Throws trident::Error naming the inconsistent sizes (e.g. heads not dividing the width).
  void validate() const;
  int64_t table_rows() const { return padded_vocab_size > 0 ? padded_vocab_size : vocab_size; }
  int64_t num_parameters() const;  // with the tied head counted once, padding rows included
  // Training FLOPs per token (6N + attention), as in the PaLM appendix, for MFU.
  double flops_per_token(int64_t seq_len) const;
  std::string describe() const;

  // "tiny", "gpt2" (124M), "gpt2-medium" (350M), "gpt2-large" (774M), "gpt2-xl" (1.5B).
  static GPTConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace trident::models
