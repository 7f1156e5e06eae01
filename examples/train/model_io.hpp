// Building the model from options and moving its weights in and out of files.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "options.hpp"
#include "trident/models/gpt.hpp"

namespace trident::train {

// This rank's share of the model: fresh from --seed, or with weights from --load / --hf.
std::unique_ptr<models::GPT> build_model(const Options& opt, const models::GPTConfig& cfg,
                                         Device device, const ParallelContext* ctx);
// Every parameter's full value (tp shards assembled, pipeline stages collected), on world rank 0
// (empty elsewhere). Collective over the whole job.
std::map<std::string, Tensor> gather_full_parameters(const models::GPT& model);
// Writes full weights and the config (as metadata) to a safetensors file.
void save_model(const std::map<std::string, Tensor>& params, const models::GPTConfig& cfg,
                const std::string& path);

}  // namespace trident::train
