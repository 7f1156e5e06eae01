// Llama 3-style architecture sizes and the named presets.
//
// Parameters (names are Hugging Face LlamaForCausalLM's without the "model." prefix, so
// llama_hf_name() is the whole mapping; Linear weights are (out, in) as torch.nn.Linear, no
// biases anywhere; D = n_embd / n_head is the head size):
//   embed_tokens.weight (V, C)                              token embedding (first stage)
//   layers.{i}.input_layernorm.weight (C)                   RMSNorm before attention
//   layers.{i}.self_attn.q_proj.weight (H D, C)
//   layers.{i}.self_attn.k_proj.weight (KV D, C)            grouped-query attention: kv head j
//   layers.{i}.self_attn.v_proj.weight (KV D, C)            serves q heads j H/KV .. (j+1) H/KV - 1
//   layers.{i}.self_attn.o_proj.weight (C, H D)
//   layers.{i}.post_attention_layernorm.weight (C)          RMSNorm before the MLP
//   layers.{i}.mlp.gate_proj.weight (F, C)
//   layers.{i}.mlp.up_proj.weight (F, C)
//   layers.{i}.mlp.down_proj.weight (C, F)
//   norm.weight (C)                                         final RMSNorm (last stage)
//   lm_head.weight (V, C)                                   untied output head (last stage)
// Blocks: x = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x)))); x = x + down(silu(gate(n2
// (x))) * up(n2(x))); RMSNorm y = w x / sqrt(mean(x^2) + eps); RoPE in HF's rotate_half form
// (angle t theta^(-2i/D) for the pair (i, i + D/2)); causal attention scaled 1/sqrt(D); loss is
// mean cross entropy.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace trident::models {

struct LlamaConfig {
  int64_t vocab_size = 128256;
  int64_t block_size = 8192;  // maximum sequence length (HF max_position_embeddings)
  int64_t n_layer = 32;
  int64_t n_head = 32;
  int64_t n_kv_head = 8;
  int64_t n_embd = 4096;
  int64_t ffn_hidden = 14336;  // SwiGLU intermediate size (HF intermediate_size)
  double rope_theta = 500000.0;
  double norm_eps = 1e-5;

  // Throws trident::Error naming the inconsistent sizes.
  void validate() const;
  // Throws trident::Error when `tp` tensor-parallel ranks cannot split the model (q heads,
  // kv heads, the MLP width or the vocabulary not divisible by tp).
  void validate_tp(int tp) const;
  int64_t head_size() const { return n_embd / n_head; }
  int64_t num_parameters() const;  // embedding and head counted separately (untied)
  // Training FLOPs per token (6N without the embedding lookup, + attention), for MFU.
  double flops_per_token(int64_t seq_len) const;
  std::string describe() const;

  // "llama-tiny" (test size), "llama-small", "llama3-8b", "llama3-70b".
  static LlamaConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  static bool is_preset(const std::string& name);
};

// Hugging Face's name for one of our parameter names ("model." + ours, except lm_head.weight).
std::string llama_hf_name(const std::string& ours);

}  // namespace trident::models
