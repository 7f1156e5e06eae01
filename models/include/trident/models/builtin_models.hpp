// The model families of models/, registered by name for trident-train's --model (and any
// program that picks a model by name). A new family adds its register_*_models call to
// builtin_models() (models/src/builtin_models.cpp).
#pragma once
#include "trident/train/model_registry.hpp"

namespace trident::models {

// A registry holding every family of models/: GPT-2 ("tiny", "gpt2", ... see gpt_stage.hpp)
// and Llama ("llama-tiny", ..., "llama3-8b", see llama_stage.hpp).
train::ModelRegistry builtin_models();

}  // namespace trident::models
