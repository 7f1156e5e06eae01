#include "trident/core/autograd.hpp"

#include <atomic>
#include <queue>
#include <unordered_map>

#include "trident/core/ops.hpp"

namespace trident::autograd {

namespace {
std::atomic<uint64_t> g_sequence{0};

// What pending_input_grad() sees: the node run_backward is running and its pending gradients.
struct RunningNode {
  const Node* node = nullptr;
  std::unordered_map<Node*, Tensor>* pending = nullptr;
};
thread_local RunningNode t_running;

// Sets t_running for the duration of one backward call (restored on exit, also on a throw).
class RunningNodeScope {
 public:
  RunningNodeScope(const Node* n, std::unordered_map<Node*, Tensor>* pending) : saved_(t_running) {
    t_running = {n, pending};
  }
  ~RunningNodeScope() { t_running = saved_; }
  RunningNodeScope(const RunningNodeScope&) = delete;
  RunningNodeScope& operator=(const RunningNodeScope&) = delete;

 private:
  RunningNode saved_;
};

struct ByLatest {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

// True when `t` is the only reference to its buffer: writing into it in place is invisible to
// anything else.
bool sole_owner(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl().storage.use_count() == 1;
}

// Adds g into a LEAF's gradient slot `slot` (defined or not) without recording history. A leaf's
// gradient outlives the pass and is written in place later (the next micro-batch's
// contributions, data-parallel all-reduces, clipping), so the slot must own its buffer: it
// takes g when nothing else refers to it (the common case: a freshly computed gradient), else
// a copy.
void accumulate_leaf(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = sole_owner(g) && g.is_contiguous() ? g
           : g.contiguous().same(g)           ? g.clone()
                                              : g.contiguous();
  } else {
    ops::add_(slot, g);
  }
}

// Adds g into the pending gradient of a NODE (copy on write). Backward functions only read
// their incoming gradient, so a slot may share its buffer with other slots (an add's backward
// hands one gradient to both inputs): the first contribution is taken as is, without a copy;
// a later one is added in place when the slot is the sole owner of its buffer, else into a
// fresh buffer. pending_input_grad() hands out a slot for in-place writes only when it is the
// sole owner.
void accumulate_pending(Tensor& slot, Tensor g) {
  if (!slot.defined()) {
    slot = g.is_contiguous() ? std::move(g) : g.contiguous();
  } else if (sole_owner(slot)) {
    ops::add_(slot, g);
  } else {
    slot = ops::add(slot, g);
  }
}
}  // namespace

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!NoGradGuard::grad_enabled()) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

void record(Tensor& output, const std::string& name, const std::vector<Tensor>& inputs,
            BackwardFn fn) {
  if (!NoGradGuard::grad_enabled()) return;
  bool any = false;
  for (const auto& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->sequence_nr = g_sequence.fetch_add(1);
  node->edges.reserve(inputs.size());
  for (const auto& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) {
        e.node = t.grad_fn();
      } else {
        e.leaf = t.impl_ptr();
      }
    }
    node->edges.push_back(std::move(e));
  }
  node->backward = std::move(fn);
  output.impl().grad_fn = std::move(node);
  output.impl().requires_grad = true;
}

void run_backward(const Tensor& root, const Tensor& grad) {
  TRIDENT_CHECK(root.requires_grad(),
                "backward() on a tensor that does not require grad (no parameter reached it)");
  NoGradGuard no_grad;  // backward closures must not record history

  if (!root.grad_fn()) {  // a leaf: its gradient is the seed itself
    Tensor slot = root.grad();
    accumulate_leaf(slot, grad);
    root.impl().grad = slot.impl_ptr();
    Tensor self(root.impl_ptr());
    for (auto& hook : root.impl().grad_ready_hooks) hook(self);
    return;
  }

  // Pass 1: count, for every node and leaf, how many edges point at it.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_uses;
  std::vector<Node*> stack{root.grad_fn().get()};
  deps[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    TRIDENT_CHECK(n->backward != nullptr, "backward through node '", n->name,
                  "' a second time: the graph is freed after its first backward pass");
    for (const Edge& e : n->edges) {
      if (e.node) {
        auto [it, inserted] = deps.emplace(e.node.get(), 0);
        it->second++;
        if (inserted) stack.push_back(e.node.get());
      } else if (e.leaf) {
        leaf_uses[e.leaf.get()]++;
      }
    }
  }

  // Pass 2: run nodes latest-first once all their consumers have contributed.
  std::unordered_map<Node*, Tensor> pending;
  std::priority_queue<Node*, std::vector<Node*>, ByLatest> ready;
  pending[root.grad_fn().get()] = grad;
  ready.push(root.grad_fn().get());
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Tensor g = std::move(pending[n]);
    pending.erase(n);
    // A node no gradient reached passes "nothing" on, so leaf counts below still reach zero.
    std::vector<Tensor> grads;
    if (g.defined()) {
      RunningNodeScope scope(n, &pending);
      grads = n->backward(g);
    } else {
      grads.resize(n->edges.size());
    }
    n->backward = nullptr;  // frees saved tensors
    TRIDENT_CHECK(grads.size() == n->edges.size(), "internal: node '", n->name, "' returned ",
                  grads.size(), " gradients for ", n->edges.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Edge& e = n->edges[i];
      if (e.node) {
        // Moved: the last edge that receives a gradient shared by several edges holds no
        // extra reference to it.
        if (grads[i].defined()) accumulate_pending(pending[e.node.get()], std::move(grads[i]));
        if (--deps[e.node.get()] == 0) ready.push(e.node.get());
      } else if (e.leaf) {
        TensorImpl* leaf = e.leaf.get();
        if (grads[i].defined()) {
          Tensor slot = leaf->grad ? Tensor(leaf->grad) : Tensor();
          accumulate_leaf(slot, grads[i]);
          leaf->grad = slot.impl_ptr();
        }
        if (--leaf_uses[leaf] == 0) {
          Tensor param(e.leaf);
          for (auto& hook : leaf->grad_ready_hooks) hook(param);
        }
      }
    }
  }
}

Tensor pending_input_grad(size_t i) {
  const RunningNode& r = t_running;
  if (r.node == nullptr || i >= r.node->edges.size() || !r.node->edges[i].node) return Tensor();
  auto it = r.pending->find(r.node->edges[i].node.get());
  // Only a slot that is the sole owner of its buffer may be written in place: one that shares
  // it with another pending gradient (copy on write, accumulate_pending) is not handed out.
  return it == r.pending->end() || !sole_owner(it->second) ? Tensor() : it->second;
}

Tensor leaf_input_grad(size_t i) {
  const RunningNode& r = t_running;
  if (r.node == nullptr || i >= r.node->edges.size() || !r.node->edges[i].leaf) return Tensor();
  const auto& grad = r.node->edges[i].leaf->grad;
  return grad ? Tensor(grad) : Tensor();
}

}  // namespace trident::autograd
