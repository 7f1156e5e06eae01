// Hugging Face GPT-2 checkpoint directories (config.json + model.safetensors): loading, and
// exporting as transformers' GPT2LMHeadModel.save_pretrained writes them (hf_checkpoint.hpp).
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
//
// Export writes what save_pretrained writes for GPT2LMHeadModel (current transformers): every
// name with the "transformer." prefix, Conv1D weights (in, out), no attn.bias / masked_bias
// (non-persistent buffers), and no lm_head.weight: it shares wte's storage, and save_pretrained
// drops tied weights from model.safetensors (transformers re-ties the head on load).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/dtype.hpp"
#include "trident/models/gpt_config.hpp"
#include "trident/models/hf_checkpoint.hpp"

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

// GPT2Config's keys for `config` as save_pretrained writes them (model_type gpt2, n_embd,
// n_layer, n_head, n_positions and n_ctx, vocab_size (the real one, never the padded size),
// layer_norm_epsilon, activation_function gelu_new, architectures ["GPT2LMHeadModel"], the
// dropouts, bos/eos_token_id vocab_size - 1 (GPT-2's <|endoftext|>), GPT2Config's defaults for
// the rest, and torch_dtype "float32" or "bfloat16" after `dtype`).
nlohmann::json hf_gpt2_config(const GPTConfig& config, DType dtype = DType::F32);
// The GPT2LMHeadModel tensors for our weights (names and layouts in the table above), stored as
// `dtype` (F32, or BF16 rounded to nearest even). `ck.tensors` holds every parameter of
// gpt_parameter_shapes(ck.config); wte.weight may have config.table_rows() rows, of which only
// the first vocab_size are written (the padding rows are never looked up).
HFTensors hf_gpt2_tensors(const HFGPT2Checkpoint& ck, DType dtype = DType::F32);
// Writes `dir`/config.json and `dir`/model.safetensors (creating `dir`).
void save_hf_gpt2(const std::string& dir, const HFGPT2Checkpoint& ck, DType dtype = DType::F32);

}  // namespace trident::models
