#include "trident/models/builtin_models.hpp"

#include "trident/models/gpt_stage.hpp"
#include "trident/models/llama_stage.hpp"

namespace trident::models {

train::ModelRegistry builtin_models() {
  train::ModelRegistry registry;
  register_gpt_models(registry);
  register_llama_models(registry);
  return registry;
}

}  // namespace trident::models
