#include "trident/models/hf_llama.hpp"

#include "trident/core/error.hpp"

namespace trident::models {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

template <typename T>
T required(const nlohmann::json& c, const char* key, const std::string& what) {
  TRIDENT_CHECK(c.contains(key) && !c.at(key).is_null(), what, ": no '", key,
                "' (not a Hugging Face Llama config.json)");
  return c.at(key).get<T>();
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(
    const LlamaConfig& c) {
  const int64_t C = c.n_embd, D = c.head_size(), F = c.ffn_hidden;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"embed_tokens.weight", {c.vocab_size, C}});
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    out.push_back({p + "input_layernorm.weight", {C}});
    out.push_back({p + "self_attn.q_proj.weight", {c.n_head * D, C}});
    out.push_back({p + "self_attn.k_proj.weight", {c.n_kv_head * D, C}});
    out.push_back({p + "self_attn.v_proj.weight", {c.n_kv_head * D, C}});
    out.push_back({p + "self_attn.o_proj.weight", {C, c.n_head * D}});
    out.push_back({p + "post_attention_layernorm.weight", {C}});
    out.push_back({p + "mlp.gate_proj.weight", {F, C}});
    out.push_back({p + "mlp.up_proj.weight", {F, C}});
    out.push_back({p + "mlp.down_proj.weight", {C, F}});
  }
  out.push_back({"norm.weight", {C}});
  out.push_back({"lm_head.weight", {c.vocab_size, C}});
  return out;
}

LlamaConfig llama_config_from_hf(const nlohmann::json& j, const std::string& what) {
  TRIDENT_CHECK(j.is_object(), what, ": not a JSON object");
  if (j.contains("model_type")) {
    TRIDENT_CHECK(j.at("model_type") == "llama", what, ": model_type ", j.at("model_type").dump(),
                  ", not \"llama\"");
  }
  const std::string act = j.value("hidden_act", std::string("silu"));
  TRIDENT_CHECK(act == "silu", what, ": hidden_act \"", act,
                "\" is not supported (the Llama MLP is SwiGLU: silu)");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    TRIDENT_CHECK(!j.value(key, false), what, ": ", key, " is true; Trident's Llama has no biases");
  }
  TRIDENT_CHECK(!j.contains("rope_scaling") || j.at("rope_scaling").is_null(), what,
                ": rope_scaling ", j.value("rope_scaling", nlohmann::json()).dump(),
                " is not supported (plain RoPE only; Llama 3.1's \"llama3\" scaling is not "
                "implemented)");
  TRIDENT_CHECK(!j.value("tie_word_embeddings", false), what,
                ": tie_word_embeddings is true; Trident's Llama has an untied output head");
  LlamaConfig c;
  c.n_embd = required<int64_t>(j, "hidden_size", what);
  c.ffn_hidden = required<int64_t>(j, "intermediate_size", what);
  c.n_layer = required<int64_t>(j, "num_hidden_layers", what);
  c.n_head = required<int64_t>(j, "num_attention_heads", what);
  c.n_kv_head = j.contains("num_key_value_heads") && !j.at("num_key_value_heads").is_null()
                    ? j.at("num_key_value_heads").get<int64_t>()
                    : c.n_head;
  c.vocab_size = required<int64_t>(j, "vocab_size", what);
  c.block_size = required<int64_t>(j, "max_position_embeddings", what);
  c.rope_theta = j.value("rope_theta", 10000.0);
  c.norm_eps = j.value("rms_norm_eps", 1e-6);
  if (j.contains("head_dim") && !j.at("head_dim").is_null()) {
    TRIDENT_CHECK(c.n_head > 0 && j.at("head_dim").get<int64_t>() == c.n_embd / c.n_head, what,
                  ": head_dim ", j.at("head_dim").dump(), " is not hidden_size / ",
                  "num_attention_heads = ", c.n_head > 0 ? c.n_embd / c.n_head : 0,
                  " (not supported)");
  }
  c.validate();
  return c;
}

nlohmann::json hf_llama_config(const LlamaConfig& c, DType dtype) {
  TRIDENT_CHECK(dtype == DType::F32 || dtype == DType::BF16,
                "Hugging Face Llama export: dtype must be f32 or bf16, not ", dtype_name(dtype));
  return {{"architectures", {"LlamaForCausalLM"}},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"head_dim", c.head_size()},
          {"hidden_act", "silu"},
          {"hidden_size", c.n_embd},
          {"initializer_range", 0.02},
          {"intermediate_size", c.ffn_hidden},
          {"max_position_embeddings", c.block_size},
          {"mlp_bias", false},
          {"model_type", "llama"},
          {"num_attention_heads", c.n_head},
          {"num_hidden_layers", c.n_layer},
          {"num_key_value_heads", c.n_kv_head},
          {"pretraining_tp", 1},
          {"rms_norm_eps", c.norm_eps},
          {"rope_scaling", nullptr},
          {"rope_theta", c.rope_theta},
          {"tie_word_embeddings", false},
          {"torch_dtype", dtype == DType::BF16 ? "bfloat16" : "float32"},
          {"use_cache", true},
          {"vocab_size", c.vocab_size}};
}

HFTensors hf_llama_tensors(const HFLlamaCheckpoint& ck, DType dtype) {
  TRIDENT_CHECK(dtype == DType::F32 || dtype == DType::BF16,
                "Hugging Face Llama export: dtype must be f32 or bf16, not ", dtype_name(dtype));
  HFTensors out;
  for (const auto& [name, shape] : llama_parameter_shapes(ck.config)) {
    auto it = ck.tensors.find(name);
    TRIDENT_CHECK(it != ck.tensors.end(), "Hugging Face Llama export: parameter '", name,
                  "' is missing");
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    TRIDENT_CHECK(static_cast<int64_t>(it->second.size()) == numel,
                  "Hugging Face Llama export: parameter '", name, "' has ", it->second.size(),
                  " values; shape ", shape_text(shape), " needs ", numel);
    out[llama_hf_name(name)] = hf_tensor_from_f32(shape, it->second, dtype);
  }
  TRIDENT_CHECK(out.size() == ck.tensors.size(),
                "Hugging Face Llama export: ", ck.tensors.size() - out.size(),
                " tensors are not Llama parameters");
  return out;
}

void save_hf_llama(const std::string& dir, const HFLlamaCheckpoint& ck, DType dtype) {
  save_hf_checkpoint(dir,
                     HFCheckpoint{hf_llama_config(ck.config, dtype), hf_llama_tensors(ck, dtype)});
}

HFLlamaCheckpoint load_hf_llama(const std::string& dir) {
  const HFCheckpoint hf = load_hf_checkpoint(dir);
  HFLlamaCheckpoint ck;
  ck.config = llama_config_from_hf(hf.config, dir + "/config.json");
  const std::string file = dir + "/model.safetensors";
  for (const auto& [name, shape] : llama_parameter_shapes(ck.config)) {
    const std::string hf_name = llama_hf_name(name);
    auto it = hf.tensors.find(hf_name);
    TRIDENT_CHECK(it != hf.tensors.end(), file, ": no tensor '", hf_name, "'");
    TRIDENT_CHECK(it->second.shape == shape, file, ": '", hf_name, "' has shape ",
                  shape_text(it->second.shape), ", the config needs ", shape_text(shape));
    ck.tensors[name] = hf_tensor_to_f32(it->second, hf_name);
  }
  for (const auto& [hf_name, t] : hf.tensors) {
    const std::string ours = hf_name.rfind("model.", 0) == 0 ? hf_name.substr(6) : hf_name;
    // Non-persistent buffers some exports carry (rotary inv_freq) are recomputed, not loaded.
    if (hf_name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    TRIDENT_CHECK(ck.tensors.count(ours) != 0 && llama_hf_name(ours) == hf_name, file,
                  ": unexpected tensor '", hf_name, "' for a Llama of ", ck.config.n_layer,
                  " layers");
  }
  return ck;
}

}  // namespace trident::models
