// Define-by-run autograd. Each differentiable op that sees an input requiring gradients records
// a Node holding its backward closure (with the tensors it saved, detached) and edges to the
// nodes (or leaves) of its inputs. Tensor::backward() runs the nodes in reverse creation order
// (a max-heap on the sequence number, so the last layer's gradients are final first),
// accumulates leaf gradients (across backward calls too, for micro-batch accumulation), and calls
// each leaf's grad-ready hooks as soon as its last contribution of this pass has arrived.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/tensor.hpp"

namespace trident::autograd {

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Edge {
  std::shared_ptr<Node> node;        // set when the input came from another op
  std::shared_ptr<TensorImpl> leaf;  // set when the input is a leaf requiring grad
  bool valid() const { return node || leaf; }
};

struct Node {
  std::string name;
  uint64_t sequence_nr = 0;
  std::vector<Edge> edges;  // one per input, in the order backward returns gradients
  BackwardFn backward;      // released after it runs: the graph is single-use
};

// True when any of the inputs requires a gradient and grad mode is on.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Makes `output` the result of a differentiable op over `inputs`: records a node whose `fn`
// returns one gradient per input (an undefined Tensor for inputs without one). Does nothing
// when no input requires a gradient or grad mode is off. `fn` must only read grad_output: the
// engine passes one gradient buffer to several nodes without copying it (an add's backward
// returns the same gradient for both inputs), so writing into it would change theirs too.
void record(Tensor& output, const std::string& name, const std::vector<Tensor>& inputs,
            BackwardFn fn);

// Runs backward from `root` with the seed gradient `grad` (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad);

// Only inside a backward function that run_backward is running: the gradient accumulated so
// far for input `i` of the running node, when that input is another op's output that already
// received a gradient from a consumer that ran earlier and that gradient is the sole owner of
// its buffer (not shared with another pending gradient); an undefined Tensor otherwise. It owns
// its buffer, so the backward may add its own contribution into it in place and return an
// undefined gradient for input i (the fused residual + layer norm adds the residual stream's
// gradient in the same kernel that writes its own, with no separate accumulation pass).
Tensor pending_input_grad(size_t i);

// Only inside a backward function that run_backward is running: the gradient that input `i`
// of the running node, a LEAF requiring grad, already holds (from an earlier backward call, a
// micro-batch, or an earlier consumer in this pass); an undefined Tensor when it has none yet
// or input i is not a leaf. The backward may add its contribution into it in place and return
// an undefined gradient for input i; the engine still counts this use of the leaf and calls
// its grad-ready hooks after its last use in the pass (the data-parallel buckets rely on them).
// Mixed-precision Linear layers write their f32 weight gradients this way: one matmul with
// beta = 1 straight into the master weight's gradient (a view into a data-parallel bucket under
// the trainer), no bf16 gradient, cast or accumulation pass.
Tensor leaf_input_grad(size_t i);

}  // namespace trident::autograd
