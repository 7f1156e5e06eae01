#include "trident/parallel/tensor_parallel.hpp"

#include "trident/core/autograd.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/working_copies.hpp"

namespace trident::tp {

void all_reduce_(Tensor& t, Communicator& comm, ReduceOp op) {
  if (comm.size() == 1 || t.numel() == 0) return;
  TRIDENT_CHECK(t.is_contiguous(), "all_reduce_ of a non-contiguous tensor");
  comm.all_reduce(t.raw_data(), static_cast<size_t>(t.numel()), t.dtype(), op);
}

Tensor copy_to_tp_region(const Tensor& x, Communicator& comm) {
  if (comm.size() == 1) return x;
  Tensor out = x.detach();
  Communicator* c = &comm;
  autograd::record(out, "copy_to_tp", {x}, [c](const Tensor& g) {
    Tensor r = g.contiguous().clone();
    all_reduce_(r, *c);
    return std::vector<Tensor>{r};
  });
  return out;
}

Tensor reduce_from_tp_region(const Tensor& x, Communicator& comm) {
  if (comm.size() == 1) return x;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = x.contiguous().clone();
  }
  all_reduce_(out, comm);
  autograd::record(out, "reduce_from_tp", {x},
                   [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

namespace {
void check_divides(int64_t n, int parts, const char* what) {
  TRIDENT_CHECK(n % parts == 0, "--tp ", parts, " does not divide ", what, " ", n);
}
// A parameter as an element-wise op uses it: cast to its input's dtype (mixed precision: a bf16
// copy of an f32 master bias, whose gradient the cast returns as f32); a no-op otherwise. The
// linear ops take the f32 weights and biases themselves (ops.hpp): their matmuls write the f32
// gradients straight into the master gradients.
Tensor in_dtype_of(const Tensor& param, const Tensor& x) {
  return WorkingCopies::to(param, x.dtype());
}

}  // namespace

Tensor linear_param(const Tensor& param, const Tensor& x) {
  const bool as_is = !param.defined() || param.dtype() == x.dtype() ||
                     (x.dtype() == DType::BF16 && param.dtype() == DType::F32);
  return as_is ? param : param.to(x.dtype());
}

ColumnParallelLinear::ColumnParallelLinear(int64_t in, int64_t out, bool has_bias,
                                           Communicator& comm, int blocks)
    : comm_(comm) {
  const int tp = comm.size();
  check_divides(out / blocks, tp, "the output width");
  const nn::ShardSpec spec{0, tp, comm.rank(), blocks};
  weight = register_parameter("weight", Tensor::zeros({out / tp, in}), spec);
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out / tp}), spec);
}

Tensor ColumnParallelLinear::forward(const Tensor& x) {
  return ops::linear(copy_to_tp_region(x, comm_), linear_param(weight, x), linear_param(bias, x));
}

Tensor ColumnParallelLinear::forward_gelu(const Tensor& x) {
  return ops::linear_gelu(copy_to_tp_region(x, comm_), linear_param(weight, x),
                          linear_param(bias, x));
}

RowParallelLinear::RowParallelLinear(int64_t in, int64_t out, bool has_bias, Communicator& comm)
    : comm_(comm) {
  const int tp = comm.size();
  check_divides(in, tp, "the input width");
  weight = register_parameter("weight", Tensor::zeros({out, in / tp}),
                              nn::ShardSpec{1, tp, comm.rank(), 1});
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out}));
}

Tensor RowParallelLinear::forward(const Tensor& x) {
  // At tp = 1 the bias goes into the matmul (its epilogue on CUDA, its gradient from the weight
  // gradient's); split over ranks it is added once, after the sum of the partial outputs.
  if (comm_.size() == 1) return ops::linear(x, linear_param(weight, x), linear_param(bias, x));
  Tensor y = reduce_from_tp_region(ops::linear(x, linear_param(weight, x)), comm_);
  return bias.defined() ? y + in_dtype_of(bias, x) : y;
}

VocabParallelEmbedding::VocabParallelEmbedding(int64_t vocab, int64_t dim, Communicator& comm)
    : comm_(comm) {
  const int tp = comm.size();
  TRIDENT_CHECK(vocab % tp == 0, "--tp ", tp, " does not divide the vocabulary of ", vocab,
                " tokens (pad the vocabulary to a multiple of ", tp, ")");
  const int64_t per = vocab / tp;
  vocab_ = vocab;
  start_ = comm.rank() * per;
  end_ = start_ + per;
  weight =
      register_parameter("weight", Tensor::zeros({per, dim}), nn::ShardSpec{0, tp, comm.rank(), 1});
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) {
  if (comm_.size() == 1) return ops::embedding(ids, weight);
  // Each rank looks up the ids in its rows (zeros for the others', on the device, without
  // reading the ids back); the sum over the group is the full lookup.
  return reduce_from_tp_region(ops::embedding(ids, weight, start_, vocab_), comm_);
}

ParallelCausalSelfAttention::ParallelCausalSelfAttention(int64_t dim, int64_t n_head, float dropout,
                                                         uint64_t seed, Communicator& comm) {
  TRIDENT_CHECK(n_head > 0 && dim % n_head == 0, "--heads ", n_head,
                " does not divide the embedding width ", dim);
  TRIDENT_CHECK(n_head % comm.size() == 0, "--tp ", comm.size(), " does not divide ", n_head,
                " attention heads");
  local_heads = n_head / comm.size();
  qkv = register_module("qkv", std::make_shared<ColumnParallelLinear>(dim, 3 * dim, true, comm, 3));
  proj = register_module("proj", std::make_shared<RowParallelLinear>(dim, dim, true, comm));
  drop = register_module("drop", std::make_shared<nn::Dropout>(dropout, seed));
}

Tensor ParallelCausalSelfAttention::forward(const Tensor& x) {
  return drop->forward(proj->forward(ops::causal_self_attention(qkv->forward(x), local_heads)));
}

ParallelMLP::ParallelMLP(int64_t dim, float dropout, uint64_t seed, Communicator& comm) {
  fc = register_module("fc", std::make_shared<ColumnParallelLinear>(dim, 4 * dim, true, comm));
  proj = register_module("proj", std::make_shared<RowParallelLinear>(4 * dim, dim, true, comm));
  drop = register_module("drop", std::make_shared<nn::Dropout>(dropout, seed));
}

// One op for fc, GELU and proj (ops::mlp_gelu: the GELU's backward inside proj's input-gradient
// matmul); proj's bias goes into its matmul at tp = 1, after the all-reduce otherwise.
Tensor ParallelMLP::forward(const Tensor& x) {
  Communicator& comm = proj->comm();
  const bool whole = comm.size() == 1;
  Tensor y = ops::mlp_gelu(copy_to_tp_region(x, fc->comm()), linear_param(fc->weight, x),
                           linear_param(fc->bias, x), linear_param(proj->weight, x),
                           whole ? linear_param(proj->bias, x) : Tensor());
  if (!whole) {
    y = reduce_from_tp_region(y, comm);
    if (proj->bias.defined()) y = y + in_dtype_of(proj->bias, x);
  }
  return drop->forward(y);
}

Tensor vocab_parallel_cross_entropy(const Tensor& logits_in, const Tensor& targets_in,
                                    int64_t vocab_start, Communicator& comm) {
  if (comm.size() == 1) return ops::cross_entropy(logits_in, targets_in);
  const char* who = "vocab-parallel cross entropy";
  TRIDENT_CHECK(logits_in.dim() >= 2 && dtype_is_floating(logits_in.dtype()), who,
                ": logits must be floating (N, V / tp) or (B, T, V / tp), got ",
                dtype_name(logits_in.dtype()), " ", logits_in.shape_str());
  TRIDENT_CHECK(targets_in.dtype() == DType::I32, who, ": targets must be i32, got ",
                dtype_name(targets_in.dtype()));
  // f16 has no kernels: the loss of an f32 copy.
  if (logits_in.dtype() == DType::F16) {
    return vocab_parallel_cross_entropy(logits_in.to(DType::F32), targets_in, vocab_start, comm);
  }
  const Tensor logits = logits_in.contiguous();
  const Device dev = logits.device();
  const Tensor targets = targets_in.to(dev).contiguous();
  const int64_t Vl = logits.shape().back(), N = logits.numel() / Vl;
  TRIDENT_CHECK(targets.numel() == N, who, ": ", targets.numel(), " targets for ", N, " rows");
  // Everything stays on the logits' device (one all-gather of 4 numbers a row, no read-back):
  // each rank summarises its slice, every rank combines all slices in rank order, so all
  // ranks hold the same lse and losses.
  const DType st = stats_dtype(logits.dtype());
  Backend& be = backend_for(dev);
  Tensor stats = Tensor::empty({N, 4}, st, dev);
  Tensor all = Tensor::empty({comm.size(), N, 4}, st, dev);
  Tensor losses = Tensor::empty({N}, st, dev), lse = Tensor::empty({N}, st, dev);
  if (N > 0) {
    be.cross_entropy_shard_stats(logits.dtype(), stats.raw_data(), logits.raw_data(),
                                 targets.data<int32_t>(), N, Vl, vocab_start);
    comm.all_gather(stats.raw_data(), all.raw_data(), static_cast<size_t>(N * 4), st);
    be.cross_entropy_shard_combine(logits.dtype(), losses.raw_data(), lse.raw_data(),
                                   all.raw_data(), targets.data<int32_t>(), N, comm.size());
  }
  return ops::cross_entropy_from_lse(logits, targets, losses, lse, vocab_start);
}

}  // namespace trident::tp
