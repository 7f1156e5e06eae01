// Loading a Hugging Face GPT-2 checkpoint directory (config.json + model.safetensors).
//
// The weights come back on plain buffers, keyed by Trident's parameter names (gpt_config.hpp)
// and in Trident's layouts:
//   HF name (optional "transformer." prefix)        ours
//   wte.weight (V,C), wpe.weight (n_positions,C)     wte.weight, wpe.weight
//   h.{i}.ln_1.*, h.{i}.ln_2.*                       blocks.{i}.ln1.*, blocks.{i}.ln2.*
//   h.{i}.attn.c_attn.weight (C,3C) Conv1D (in,out)  blocks.{i}.attn.qkv.weight (3C,C) transposed
//   h.{i}.attn.c_proj.weight (C,C)  Conv1D           blocks.{i}.attn.proj.weight transposed
//   h.{i}.mlp.c_fc.weight (C,4C)    Conv1D           blocks.{i}.mlp.fc.weight (4C,C) transposed
//   h.{i}.mlp.c_proj.weight (4C,C)  Conv1D           blocks.{i}.mlp.proj.weight (C,4C) transposed
//   biases and ln_f.*                                same values, renamed
// Ignored: the attn.bias / attn.masked_bias buffers; lm_head.weight, which must equal wte.weight
// (GPT-2's head is tied). Any other tensor, a missing one or a wrong shape is an error.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "trident/models/gpt_config.hpp"

namespace trident::models {

struct HFGPT2Checkpoint {
  GPTConfig config;
  std::map<std::string, std::vector<float>> tensors;   // our name -> row-major f32 values
  std::map<std::string, std::vector<int64_t>> shapes;  // our name -> shape
};

// Every GPT parameter with its shape, in the model's registration order (gpt_config.hpp).
std::vector<std::pair<std::string, std::vector<int64_t>>> gpt_parameter_shapes(
    const GPTConfig& config);

// Parses a Hugging Face GPT-2 config.json: n_embd, n_layer, n_head, n_positions (or n_ctx),
// vocab_size, layer_norm_epsilon (default 1e-5). Rejects settings Trident's GPT cannot
// reproduce (a non-tanh activation, n_inner != 4 n_embd, unscaled attention).
GPTConfig read_hf_gpt2_config(const std::string& config_json_path);

// Loads `dir`/config.json and `dir`/model.safetensors.
HFGPT2Checkpoint load_hf_gpt2(const std::string& dir);

}  // namespace trident::models
