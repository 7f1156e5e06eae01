// Tensor-parallel layers (Megatron-LM's scheme), ordinary modules that take the tensor-parallel
// communicator. With a communicator of size 1 each reduces to its serial counterpart.
//
//   ColumnParallelLinear  W (out, in) split by rows: rank r computes out/tp features.
//                         Input gradient all-reduced in backward (copy_to_tp_region).
//   RowParallelLinear     W (out, in) split by columns: rank r consumes in/tp features and the
//                         partial outputs are all-reduced in forward (reduce_from_tp_region).
//   VocabParallelEmbedding  rows [r V/tp, (r+1) V/tp) of the table; other ids give zeros; the
//                         partial embeddings are all-reduced.
//   vocab_parallel_cross_entropy  loss from logits split over the vocabulary: no rank ever
//                         holds the full (N, V) logits; each rank's max, sum of exponentials
//                         and target logit per row ((N, 4) values) are all-gathered and
//                         combined on the device, on any backend, without a read-back.
#pragma once
#include <cstdint>

#include "trident/core/nn/layers.hpp"
#include "trident/parallel/communicator.hpp"

namespace trident::tp {

// Forward identity, backward all-reduce (sum) of the gradient over `comm`.
// A parameter as the linear ops take it: itself when of x's dtype or an f32 master weight of a
// bf16 x (mixed precision: the op casts it for the matmul and writes the f32 gradient straight
// into the master's), else cast to x's dtype (an f64 gradient check of f32 layers).
Tensor linear_param(const Tensor& param, const Tensor& x);
Tensor copy_to_tp_region(const Tensor& x, Communicator& comm);
// Forward all-reduce (sum) over `comm`, backward identity.
Tensor reduce_from_tp_region(const Tensor& x, Communicator& comm);
// In-place sum of a tensor over `comm` (no autograd).
void all_reduce_(Tensor& t, Communicator& comm, ReduceOp op = ReduceOp::Sum);

// y = x W^T + b with W split by output rows. `blocks` > 1 splits each of `blocks` equal row
// blocks separately (a fused q|k|v projection: rank r holds its heads' q, k and v rows).
class ColumnParallelLinear : public nn::UnaryModule {
 public:
  ColumnParallelLinear(int64_t in, int64_t out, bool bias, Communicator& comm, int blocks = 1);
  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out / tp)
  Tensor forward_gelu(const Tensor& x);      // gelu(forward(x)), fused (ops::linear_gelu)
  Communicator& comm() const { return comm_; }
  Tensor weight, bias;

 private:
  Communicator& comm_;
};

class RowParallelLinear : public nn::UnaryModule {
 public:
  RowParallelLinear(int64_t in, int64_t out, bool bias, Communicator& comm);
  Tensor forward(const Tensor& x) override;  // (..., in / tp) -> (..., out)
  Communicator& comm() const { return comm_; }
  Tensor weight, bias;

 private:
  Communicator& comm_;
};

class VocabParallelEmbedding : public nn::Module {
 public:
  VocabParallelEmbedding(int64_t vocab, int64_t dim, Communicator& comm);
  Tensor forward(const Tensor& ids);  // ids (any shape) -> (*ids.shape, dim), replicated
  int64_t vocab_start() const { return start_; }
  int64_t vocab_end() const { return end_; }
  Tensor weight;

 private:
  Communicator& comm_;
  int64_t vocab_, start_, end_;
};

// Causal self-attention with heads split over the tensor-parallel ranks: qkv is column-parallel
// by q|k|v blocks (rank r holds heads [r H/tp, (r+1) H/tp)), proj is row-parallel.
class ParallelCausalSelfAttention : public nn::UnaryModule {
 public:
  ParallelCausalSelfAttention(int64_t dim, int64_t n_head, float dropout, uint64_t seed,
                              Communicator& comm);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<ColumnParallelLinear> qkv;
  std::shared_ptr<RowParallelLinear> proj;
  std::shared_ptr<nn::Dropout> drop;
  int64_t local_heads;
};

// fc column-parallel (dim -> 4 dim), GELU on the local slice, proj row-parallel, dropout; the
// three run as one op (ops::mlp_gelu).
class ParallelMLP : public nn::UnaryModule {
 public:
  ParallelMLP(int64_t dim, float dropout, uint64_t seed, Communicator& comm);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<ColumnParallelLinear> fc;
  std::shared_ptr<RowParallelLinear> proj;
  std::shared_ptr<nn::Dropout> drop;
};

// Mean cross entropy of logits whose last dimension holds vocabulary entries
// [vocab_start, vocab_start + local V) of this rank; targets are global ids (< 0 ignored; a
// target no rank holds gives a NaN loss). f32 (f64 for f64 logits) scalar; bf16 logits are
// read as they are and get bf16 gradients. Every rank of `comm` must call it.
Tensor vocab_parallel_cross_entropy(const Tensor& logits_local, const Tensor& targets,
                                    int64_t vocab_start, Communicator& comm);

}  // namespace trident::tp
