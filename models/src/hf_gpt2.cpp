#include "trident/models/hf_gpt2.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"

namespace trident::models {
namespace {

using json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t positive_int(const json& j, const std::string& key, const std::string& path) {
  TRIDENT_CHECK(j.contains(key), path, ": missing \"", key, "\"");
  TRIDENT_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() > 0, path, ": \"", key,
                "\" must be a positive integer, found ", j[key].dump());
  return j[key].get<int64_t>();
}

// One GPT parameter and where it lives in a Hugging Face GPT-2 checkpoint.
struct HFParameter {
  std::string ours;
  std::string hf;              // without the optional "transformer." prefix
  std::vector<int64_t> shape;  // ours
  bool conv1d;                 // stored (in, out): transpose to our (out, in)
};

std::vector<HFParameter> hf_layout(const GPTConfig& c) {
  std::vector<HFParameter> out;
  for (const auto& [ours, shape] : gpt_parameter_shapes(c)) {
    std::string hf = ours;
    bool conv1d = false;
    if (ours.rfind("blocks.", 0) == 0) {
      const size_t dot = ours.find('.', 7);
      const std::string layer = ours.substr(7, dot - 7);
      static const std::pair<const char*, const char*> renames[] = {{"ln1.", "ln_1."},
                                                                    {"ln2.", "ln_2."},
                                                                    {"attn.qkv.", "attn.c_attn."},
                                                                    {"attn.proj.", "attn.c_proj."},
                                                                    {"mlp.fc.", "mlp.c_fc."},
                                                                    {"mlp.proj.", "mlp.c_proj."}};
      std::string rest = ours.substr(dot + 1);
      for (const auto& [from, to] : renames) {
        if (rest.rfind(from, 0) == 0) {
          rest = to + rest.substr(std::string(from).size());
          break;
        }
      }
      hf = "h." + layer + "." + rest;
      conv1d = ends_with(rest, ".weight") && rest.rfind("ln_", 0) != 0;
    }
    out.push_back({ours, hf, shape, conv1d});
  }
  return out;
}

std::vector<float> transpose(const std::vector<float>& src, int64_t rows, int64_t cols) {
  std::vector<float> dst(src.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  return dst;
}

// The shortest decimal that reads back as `f`, as a double: 1e-5f is written 1e-05 (as Python
// writes the float 1e-05), not 9.99999974737875e-06.
double shortest_decimal(float f) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> gpt_parameter_shapes(
    const GPTConfig& cfg) {
  const int64_t C = cfg.n_embd;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {
      {"wte.weight", {cfg.vocab_size, C}}, {"wpe.weight", {cfg.block_size, C}}};
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    out.push_back({b + "ln1.weight", {C}});
    out.push_back({b + "ln1.bias", {C}});
    out.push_back({b + "attn.qkv.weight", {3 * C, C}});
    out.push_back({b + "attn.qkv.bias", {3 * C}});
    out.push_back({b + "attn.proj.weight", {C, C}});
    out.push_back({b + "attn.proj.bias", {C}});
    out.push_back({b + "ln2.weight", {C}});
    out.push_back({b + "ln2.bias", {C}});
    out.push_back({b + "mlp.fc.weight", {4 * C, C}});
    out.push_back({b + "mlp.fc.bias", {4 * C}});
    out.push_back({b + "mlp.proj.weight", {C, 4 * C}});
    out.push_back({b + "mlp.proj.bias", {C}});
  }
  out.push_back({"ln_f.weight", {C}});
  out.push_back({"ln_f.bias", {C}});
  return out;
}

GPTConfig read_hf_gpt2_config(const std::string& path) {
  const json j = read_hf_config(path);
  if (j.contains("model_type")) {
    TRIDENT_CHECK(j["model_type"] == "gpt2", path, ": model_type is ", j["model_type"].dump(),
                  ", not \"gpt2\"");
  }
  GPTConfig c;
  c.n_embd = positive_int(j, "n_embd", path);
  c.n_layer = positive_int(j, "n_layer", path);
  c.n_head = positive_int(j, "n_head", path);
  c.vocab_size = positive_int(j, "vocab_size", path);
  c.block_size = positive_int(j, j.contains("n_positions") ? "n_positions" : "n_ctx", path);
  c.dropout = 0.0f;
  c.ln_eps = 1e-5f;
  if (j.contains("layer_norm_epsilon")) {
    TRIDENT_CHECK(j["layer_norm_epsilon"].is_number() && j["layer_norm_epsilon"] > 0, path,
                  ": layer_norm_epsilon must be a positive number, found ",
                  j["layer_norm_epsilon"].dump());
    c.ln_eps = j["layer_norm_epsilon"].get<float>();
  }
  if (j.contains("activation_function")) {
    const json& a = j["activation_function"];
    TRIDENT_CHECK(a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast", path,
                  ": activation_function ", a.dump(),
                  " is not the tanh GELU Trident's GPT uses (gelu_new)");
  }
  if (j.contains("n_inner") && !j["n_inner"].is_null()) {
    TRIDENT_CHECK(j["n_inner"] == 4 * c.n_embd, path, ": n_inner ", j["n_inner"].dump(),
                  " is not 4 * n_embd = ", 4 * c.n_embd, ", the MLP width Trident's GPT uses");
  }
  TRIDENT_CHECK(j.value("scale_attn_weights", true) == true, path,
                ": scale_attn_weights false is not supported (attention is scaled by "
                "1/sqrt(head size))");
  TRIDENT_CHECK(j.value("scale_attn_by_inverse_layer_idx", false) == false, path,
                ": scale_attn_by_inverse_layer_idx is not supported");
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(str_cat(path, ": ", e.what()));
  }
  return c;
}

HFGPT2Checkpoint load_hf_gpt2(const std::string& dir) {
  HFGPT2Checkpoint ck;
  ck.config = read_hf_gpt2_config(dir + "/config.json");
  const std::string weights = hf_weights_path(dir);
  SafetensorsFile f = SafetensorsFile::open(weights);
  std::string prefix;
  if (f.has("transformer.wte.weight")) {
    prefix = "transformer.";
  } else {
    TRIDENT_CHECK(f.has("wte.weight"), weights,
                  ": missing tensor 'wte.weight' (or "
                  "'transformer.wte.weight'): not a GPT-2 checkpoint");
  }
  const GPTConfig& c = ck.config;
  const std::string config_desc =
      str_cat("config.json: n_embd ", c.n_embd, ", n_layer ", c.n_layer, ", vocab_size ",
              c.vocab_size, ", n_positions ", c.block_size);

  std::set<std::string> used;
  for (const HFParameter& t : hf_layout(c)) {
    const std::string name = prefix + t.hf;
    TRIDENT_CHECK(f.has(name), weights, ": missing tensor '", name, "' (Trident's ", t.ours,
                  ", shape ", shape_str(t.shape), ")");
    const std::vector<int64_t> expected =
        t.conv1d ? std::vector<int64_t>{t.shape[1], t.shape[0]} : t.shape;
    const std::vector<int64_t>& found = f.info(name).shape;
    TRIDENT_CHECK(found == expected, weights, ": tensor '", name, "' has shape ", shape_str(found),
                  ", expected ", shape_str(expected), t.conv1d ? " (Conv1D, (in, out))" : "",
                  " for ", config_desc);
    std::vector<float> v = f.read_f32(name);
    ck.tensors[t.ours] = t.conv1d ? transpose(v, expected[0], expected[1]) : std::move(v);
    ck.shapes[t.ours] = t.shape;
    used.insert(name);
  }
  for (const std::string& name : f.names()) {
    if (used.count(name) || ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"))
      continue;
    if (name == "lm_head.weight") {
      TRIDENT_CHECK(f.info(name).shape == ck.shapes["wte.weight"] &&
                        f.read_f32(name) == ck.tensors["wte.weight"],
                    weights,
                    ": lm_head.weight differs from wte.weight; Trident's GPT ties the "
                    "output head to the token embedding and cannot load an untied head");
      continue;
    }
    throw Error(str_cat(weights, ": unexpected tensor '", name, "' for ", config_desc,
                        " (do config.json and the weights match?)"));
  }
  return ck;
}

json hf_gpt2_config(const GPTConfig& c, DType dtype) {
  TRIDENT_CHECK(dtype == DType::F32 || dtype == DType::BF16,
                "Hugging Face GPT-2 export: dtype must be f32 or bf16, not ", dtype_name(dtype));
  const double dropout = shortest_decimal(c.dropout);
  return json{{"activation_function", "gelu_new"},
              {"architectures", {"GPT2LMHeadModel"}},
              {"attn_pdrop", dropout},
              {"bos_token_id", c.vocab_size - 1},
              {"embd_pdrop", dropout},
              {"eos_token_id", c.vocab_size - 1},
              {"initializer_range", 0.02},
              {"layer_norm_epsilon", shortest_decimal(c.ln_eps)},
              {"model_type", "gpt2"},
              {"n_ctx", c.block_size},
              {"n_embd", c.n_embd},
              {"n_head", c.n_head},
              {"n_inner", nullptr},
              {"n_layer", c.n_layer},
              {"n_positions", c.block_size},
              {"reorder_and_upcast_attn", false},
              {"resid_pdrop", dropout},
              {"scale_attn_by_inverse_layer_idx", false},
              {"scale_attn_weights", true},
              {"summary_activation", nullptr},
              {"summary_first_dropout", 0.1},
              {"summary_proj_to_labels", true},
              {"summary_type", "cls_index"},
              {"summary_use_proj", true},
              {"torch_dtype", dtype == DType::BF16 ? "bfloat16" : "float32"},
              {"use_cache", true},
              {"vocab_size", c.vocab_size}};
}

HFTensors hf_gpt2_tensors(const HFGPT2Checkpoint& ck, DType dtype) {
  TRIDENT_CHECK(dtype == DType::F32 || dtype == DType::BF16,
                "Hugging Face GPT-2 export: dtype must be f32 or bf16, not ", dtype_name(dtype));
  const GPTConfig& c = ck.config;
  HFTensors out;
  for (const HFParameter& t : hf_layout(c)) {
    auto it = ck.tensors.find(t.ours);
    TRIDENT_CHECK(it != ck.tensors.end(), "Hugging Face GPT-2 export: parameter '", t.ours,
                  "' is missing");
    std::vector<float> v = it->second;
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (t.ours == "wte.weight" && c.table_rows() > c.vocab_size &&
        int64_t(v.size()) == c.table_rows() * c.n_embd) {
      v.resize(size_t(numel));  // drop the padding rows (vocab_size .. table_rows - 1)
    }
    TRIDENT_CHECK(int64_t(v.size()) == numel, "Hugging Face GPT-2 export: parameter '", t.ours,
                  "' has ", v.size(), " values; shape ", shape_str(t.shape), " needs ", numel);
    if (t.conv1d) {
      out["transformer." + t.hf] =
          hf_tensor_from_f32({t.shape[1], t.shape[0]}, transpose(v, t.shape[0], t.shape[1]), dtype);
    } else {
      out["transformer." + t.hf] = hf_tensor_from_f32(t.shape, v, dtype);
    }
  }
  return out;
}

void save_hf_gpt2(const std::string& dir, const HFGPT2Checkpoint& ck, DType dtype) {
  save_hf_checkpoint(dir,
                     HFCheckpoint{hf_gpt2_config(ck.config, dtype), hf_gpt2_tensors(ck, dtype)});
}

}  // namespace trident::models
