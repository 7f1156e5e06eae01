// Building the model from options and moving its weights in and out of files.
#pragma once
#include <memory>
#include <string>

#include "options.hpp"
#include "trident/models/gpt.hpp"

namespace trident::train {

// A fresh model (from --model and the size flags), or one loaded from --load / --hf.
std::unique_ptr<models::GPT> build_model(const Options& opt, Device device);
// Writes the weights and the config (as metadata) to a safetensors file.
void save_model(const models::GPT& model, const std::string& path);

}  // namespace trident::train
