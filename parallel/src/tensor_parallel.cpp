#include "trident/parallel/tensor_parallel.hpp"

#include <cmath>
#include <limits>

#include "trident/core/autograd.hpp"
#include "trident/core/ops.hpp"

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
// A parameter as the layer uses it: cast to its input's dtype (mixed precision: bf16 working
// copies of f32 master weights, whose gradients the cast returns as f32); a no-op otherwise.
Tensor in_dtype_of(const Tensor& param, const Tensor& x) {
  return param.defined() ? param.to(x.dtype()) : param;
}
}  // namespace

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
  return ops::linear(copy_to_tp_region(x, comm_), in_dtype_of(weight, x), in_dtype_of(bias, x));
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
  Tensor y = reduce_from_tp_region(ops::linear(x, in_dtype_of(weight, x)), comm_);
  return bias.defined() ? y + in_dtype_of(bias, x) : y;
}

VocabParallelEmbedding::VocabParallelEmbedding(int64_t vocab, int64_t dim, Communicator& comm)
    : comm_(comm) {
  const int tp = comm.size();
  TRIDENT_CHECK(vocab % tp == 0, "--tp ", tp, " does not divide the vocabulary of ", vocab,
                " tokens (pad the vocabulary to a multiple of ", tp, ")");
  const int64_t per = vocab / tp;
  start_ = comm.rank() * per;
  end_ = start_ + per;
  weight = register_parameter("weight", Tensor::zeros({per, dim}),
                              nn::ShardSpec{0, tp, comm.rank(), 1});
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) {
  if (comm_.size() == 1) return ops::embedding(ids, weight);
  // Ids owned by other ranks look up row 0 and are then zeroed by the mask.
  std::vector<int32_t> host = ids.to_vector<int32_t>();
  std::vector<float> mask(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    const bool mine = host[i] >= start_ && host[i] < end_;
    mask[i] = mine ? 1.0f : 0.0f;
    host[i] = mine ? static_cast<int32_t>(host[i] - start_) : 0;
  }
  Shape mshape = ids.shape();
  mshape.push_back(1);
  const Tensor local_ids = Tensor::from_vector(host, ids.shape(), ids.device());
  const Tensor m = Tensor::from_vector(mask, mshape, ids.device()).to(weight.dtype());
  return reduce_from_tp_region(ops::embedding(local_ids, weight) * m, comm_);
}

ParallelCausalSelfAttention::ParallelCausalSelfAttention(int64_t dim, int64_t n_head,
                                                         float dropout, uint64_t seed,
                                                         Communicator& comm) {
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

Tensor ParallelMLP::forward(const Tensor& x) {
  return drop->forward(proj->forward(ops::gelu(fc->forward(x))));
}

Tensor vocab_parallel_cross_entropy(const Tensor& logits_in, const Tensor& targets_in,
                                    int64_t vocab_start, Communicator& comm) {
  if (comm.size() == 1) return ops::cross_entropy(logits_in, targets_in);
  // bf16 logits: the loss of an f32 copy, whose backward returns the gradient as bf16.
  if (logits_in.dtype() == DType::BF16) {
    return vocab_parallel_cross_entropy(logits_in.to(DType::F32), targets_in, vocab_start, comm);
  }
  TRIDENT_CHECK(logits_in.device().is_cpu() && logits_in.dtype() == DType::F32,
                "vocab-parallel cross entropy runs on f32 or bf16 CPU tensors in this build");
  const Tensor logits = logits_in.contiguous();
  const int64_t Vl = logits.shape().back(), N = logits.numel() / Vl;
  const std::vector<int32_t> targets = targets_in.to_vector<int32_t>();
  TRIDENT_CHECK(static_cast<int64_t>(targets.size()) == N, "vocab-parallel cross entropy: ",
                targets.size(), " targets for ", N, " rows");
  const float* z = logits.data<float>();
  // Row statistics, reduced over the vocabulary shards.
  std::vector<float> mx(N), sumexp(N), tlogit(N, 0.0f);
  for (int64_t i = 0; i < N; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < Vl; ++j) m = std::max(m, z[i * Vl + j]);
    mx[i] = m;
  }
  comm.all_reduce(mx.data(), mx.size(), DType::F32, ReduceOp::Max);
  int64_t valid = 0;
  for (int64_t i = 0; i < N; ++i) {
    double s = 0;
    for (int64_t j = 0; j < Vl; ++j) s += std::exp(z[i * Vl + j] - mx[i]);
    sumexp[i] = static_cast<float>(s);
    const int64_t t = targets[i] - vocab_start;
    if (targets[i] >= 0) ++valid;
    if (targets[i] >= 0 && t >= 0 && t < Vl) tlogit[i] = z[i * Vl + t];
  }
  comm.all_reduce(sumexp.data(), sumexp.size(), DType::F32, ReduceOp::Sum);
  comm.all_reduce(tlogit.data(), tlogit.size(), DType::F32, ReduceOp::Sum);
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] >= 0) total += std::log(sumexp[i]) + mx[i] - tlogit[i];
  }
  const double denom = valid > 0 ? static_cast<double>(valid) : 1.0;
  Tensor out = Tensor::full({}, total / denom, DType::F32);
  const Tensor ld = logits.detach();
  autograd::record(out, "vocab_parallel_cross_entropy", {logits},
                   [ld, targets, mx, sumexp, vocab_start, N, Vl, denom](const Tensor& g) {
                     const float scale = static_cast<float>(g.item() / denom);
                     Tensor d = Tensor::empty(ld.shape(), DType::F32);
                     const float* zz = ld.data<float>();
                     float* dd = d.data<float>();
                     for (int64_t i = 0; i < N; ++i) {
                       const int64_t t = targets[i] - vocab_start;
                       const bool ignored = targets[i] < 0;
                       for (int64_t j = 0; j < Vl; ++j) {
                         const float p = std::exp(zz[i * Vl + j] - mx[i]) / sumexp[i];
                         dd[i * Vl + j] = ignored ? 0.0f : (p - (j == t ? 1.0f : 0.0f)) * scale;
                       }
                     }
                     return std::vector<Tensor>{d};
                   });
  return out;
}

}  // namespace trident::tp
