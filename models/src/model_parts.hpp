// What every model here builds the same way (GPT, Llama): the parallel context it runs in, the
// layers its pipeline stage holds, and parameters set from full (unsharded) f32 tensors through
// their shard specs, so a model's weights are the same under every dp x pp x tp layout.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/nn/module.hpp"
#include "trident/parallel/parallel_context.hpp"

namespace trident::models::detail {

// ctx, or a one-rank context made into own when ctx is null.
const ParallelContext* context_or_own(const ParallelContext* ctx,
                                      std::unique_ptr<ParallelContext>& own);

// Throws "--pp 3 does not divide the model's 8 layers" unless pp divides n_layer.
void check_pp_divides_layers(int pp, int64_t n_layer);

// The layers of this rank's pipeline stage: n_layer / pp consecutive layers from
// pp_rank * (n_layer / pp). Throws as check_pp_divides_layers.
struct StageLayers {
  int64_t first = 0;
  int64_t count = 0;
};
StageLayers stage_layers(const Topology& topo, int64_t n_layer);

// FNV-1a of a parameter name: with the seed, the counter of its initialisation stream.
uint64_t name_hash(const std::string& s);

// For each parameter of m: fill(name, full) writes the full f32 tensor (its shape is the
// unsharded one), and the parameter takes its shard of it. Runs without autograd.
void set_parameters_from_full(
    nn::Module& m, const std::function<void(const std::string& name, Tensor& full)>& fill);

// Each parameter of m takes its shard of values[name], the full tensor as row-major f32. A
// missing tensor or one of the wrong size is an Error naming the parameter, unless
// `adapt(name, value, full_shape)` returns a defined full tensor for it (a model's own
// conversions, e.g. GPT's zero padding rows of an unpadded token table). Runs without autograd.
using AdaptValue = std::function<Tensor(const std::string& name, const std::vector<float>& value,
                                        const Shape& full_shape)>;
void load_parameters(nn::Module& m, const std::map<std::string, std::vector<float>>& values,
                     const AdaptValue& adapt = nullptr);

// Every parameter of m, by name, read as f32 from the safetensors file at `path` (full
// tensors, as trident-train writes them): what load_parameters takes.
std::map<std::string, std::vector<float>> read_parameters(const std::string& path,
                                                          const nn::Module& m);

}  // namespace trident::models::detail
