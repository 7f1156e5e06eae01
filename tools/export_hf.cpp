// trident-export_hf: weights written by trident-train -> a Hugging Face model directory.
//
//   trident-export_hf runs/default/model.safetensors hf-out               # f32
//   trident-export_hf runs/default/model.safetensors hf-out --dtype bf16
//
// The input is the model.safetensors trident-train writes at the end of a run (our parameter
// names, the sizes in its metadata, "format" naming the family). The output directory gets
// config.json and model.safetensors as transformers' save_pretrained writes them:
// GPT2LMHeadModel for "trident-gpt" (hf_gpt2.hpp), LlamaForCausalLM for "trident-llama"
// (hf_llama.hpp). A padded vocabulary exports only the real vocab_size rows.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "trident/core/error.hpp"
#include "trident/io/safetensors.hpp"
#include "trident/models/gpt_stage.hpp"
#include "trident/models/hf_gpt2.hpp"
#include "trident/models/hf_llama.hpp"
#include "trident/models/llama_stage.hpp"

namespace {

using namespace trident;

void export_gpt(const std::string& in, const std::string& out, DType dtype) {
  train::ModelArgs args;
  args.load = in;
  models::HFGPT2Checkpoint ck;
  ck.config = models::resolve_gpt_config(args);  // sizes from the metadata
  SafetensorsFile f = SafetensorsFile::open(in);
  for (const auto& [name, shape] : models::gpt_parameter_shapes(ck.config)) {
    ck.tensors[name] = f.read_f32(name);  // wte with its padding rows, if any
  }
  models::save_hf_gpt2(out, ck, dtype);
  std::printf("GPT-2 (%s) -> %s/config.json, %s/model.safetensors (%s)\n",
              ck.config.describe().c_str(), out.c_str(), out.c_str(), dtype_name(dtype));
}

void export_llama(const std::string& in, const std::string& out, DType dtype) {
  train::ModelArgs args;
  args.load = in;
  models::HFLlamaCheckpoint ck;
  ck.config = models::resolve_llama_config(args);
  SafetensorsFile f = SafetensorsFile::open(in);
  for (const auto& [name, shape] : models::llama_parameter_shapes(ck.config)) {
    ck.tensors[name] = f.read_f32(name);
  }
  models::save_hf_llama(out, ck, dtype);
  std::printf("Llama -> %s/config.json, %s/model.safetensors (%s)\n", out.c_str(), out.c_str(),
              dtype_name(dtype));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Exports weights written by trident-train as a Hugging Face model directory"};
  std::string in, out, dtype = "f32";
  app.add_option("weights", in, "model.safetensors written by trident-train")->required();
  app.add_option("out_dir", out, "directory for config.json and model.safetensors")->required();
  app.add_option("--dtype", dtype, "f32 or bf16 (rounded to nearest even)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  CLI11_PARSE(app, argc, argv);
  try {
    const DType t = dtype == "bf16" ? DType::BF16 : DType::F32;
    const auto& meta = SafetensorsFile::open(in).metadata();
    const auto format = meta.find("format");
    const std::string family = format == meta.end() ? "" : format->second;
    if (family == "trident-gpt") {
      export_gpt(in, out, t);
    } else if (family == "trident-llama") {
      export_llama(in, out, t);
    } else {
      throw Error(str_cat(in, ": metadata format is '", family,
                          "'; expected the trident-gpt or trident-llama weights trident-train "
                          "writes at the end of a run"));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trident-export_hf: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
