// Hugging Face Llama checkpoint directories (config.json + model.safetensors): import, and
// export as transformers' LlamaForCausalLM.save_pretrained writes them (hf_checkpoint.hpp).
//
// Our names are Hugging Face's without the "model." prefix (llama_config.hpp), and both store
// Linear weights (out, in), so the mapping is a rename only:
//   model.embed_tokens.weight, model.layers.{i}.*, model.norm.weight  <->  ours without "model."
//   lm_head.weight                                                    <->  lm_head.weight
// RoPE is HF's rotate_half form on both sides, so q_proj/k_proj need no permutation (that is
// only for Meta's original consolidated.*.pth checkpoints).
//
// config.json (LlamaConfig's keys): hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, vocab_size, max_position_embeddings, rope_theta,
// rms_norm_eps. Refused on import, naming the key: an activation other than silu, biases
// (attention_bias, mlp_bias), rope_scaling (Llama 3.1's "llama3" frequency scaling), a head_dim
// other than hidden_size / num_attention_heads, tied embeddings (tie_word_embeddings: Llama
// 3.2 1B/3B; our head is untied). Any tensor missing, extra or of the wrong shape is an error.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/dtype.hpp"
#include "trident/models/hf_checkpoint.hpp"
#include "trident/models/llama_config.hpp"

namespace trident::models {

struct HFLlamaCheckpoint {
  LlamaConfig config;
  std::map<std::string, std::vector<float>> tensors;  // our name -> row-major f32 values
};

// Every Llama parameter (our names) with its full shape, in the model's registration order.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(
    const LlamaConfig& config);

// LlamaConfig from a parsed config.json; `what` names the file in errors.
LlamaConfig llama_config_from_hf(const nlohmann::json& config, const std::string& what);
// LlamaConfig's keys for `config` as save_pretrained writes them for LlamaForCausalLM
// (architectures, model_type "llama", the sizes, silu, no biases, no rope_scaling, untied,
// LlamaConfig's defaults for the rest, torch_dtype "float32" or "bfloat16" after `dtype`).
nlohmann::json hf_llama_config(const LlamaConfig& config, DType dtype = DType::F32);
// The LlamaForCausalLM tensors for our weights, stored as `dtype` (F32 or BF16).
HFTensors hf_llama_tensors(const HFLlamaCheckpoint& ck, DType dtype = DType::F32);

// Writes `dir`/config.json and `dir`/model.safetensors (creating `dir`).
void save_hf_llama(const std::string& dir, const HFLlamaCheckpoint& ck, DType dtype = DType::F32);
// Reads `dir`/config.json and `dir`/model.safetensors (F32, BF16, F16 or F64 tensors as f32).
HFLlamaCheckpoint load_hf_llama(const std::string& dir);

}  // namespace trident::models
