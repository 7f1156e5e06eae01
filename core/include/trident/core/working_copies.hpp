// The step's bf16 working copies of f32 master parameters (mixed precision). A linear op casts
// its f32 weight and bias to bf16 for the GEMM (ops::detail::gemm_operand); without these
// copies that is one cast launch per parameter per micro-batch. A WorkingCopies opened as a
// Scope around a step's forward and backward (every micro-batch; the optimizer runs outside, so
// the masters do not change inside) casts every parameter it keeps in ONE multi-tensor launch
// (Backend::convert_to_bf16_table) when the scope opens, and gemm_operand returns the kept copy.
//
// Which parameters: the ones gemm_operand asks for inside the first scope (learned there; that
// step casts per call, as without copies); at its close one bf16 buffer holding all of them and
// the launch's table are allocated, once, and never move (a CUDA graph captured in a later step
// replays the launch). A parameter is found by its data pointer, element count and dtype
// (f32, contiguous); anything else, or a parameter whose storage moved, is cast per call. The
// copy is bitwise the per-call cast, so results do not change.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "trident/core/tensor.hpp"

namespace trident {

class WorkingCopies {
 public:
  WorkingCopies() = default;
  WorkingCopies(const WorkingCopies&) = delete;
  WorkingCopies& operator=(const WorkingCopies&) = delete;

  // Makes `copies` the current working copies of the calling thread until it closes: the
  // first scope of a WorkingCopies learns the parameters, every later one first refreshes all
  // copies from their masters in one launch. Scopes nest (the inner one wins).
  class Scope {
   public:
    explicit Scope(WorkingCopies& copies);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    WorkingCopies& copies_;
    WorkingCopies* prev_;
  };

  // The current scope's bf16 copy of `param` (an f32 master) when one is kept, else undefined
  // (outside a scope, in the learning scope, for another dtype, or for a tensor it never saw).
  static Tensor find(const Tensor& param, DType dtype);

  // param.to(dtype) for a parameter an element-wise op reads in the activations' dtype (a layer
  // norm's gamma and beta, an RMSNorm weight, a tensor-parallel bias): the current scope's copy
  // when one is kept (learned as gemm_operand's are; no launch), with Tensor::to's autograd (the
  // gradient cast back to the parameter's dtype, bitwise the same); param.to(dtype) otherwise.
  static Tensor to(const Tensor& param, DType dtype);

  int64_t count() const { return static_cast<int64_t>(masters_.size()); }  // tensors kept
  int64_t elements() const { return buffer_.numel(); }  // incl. 8-element alignment padding
  int64_t refreshes() const { return refreshes_; }      // one-launch casts so far

 private:
  void learn(const Tensor& param);
  void build();    // at the learning scope's close
  void refresh();  // at every later scope's open

  bool learning_ = true;
  std::vector<Tensor> masters_;       // learned, in first-use order
  std::vector<const void*> sources_;  // their data pointers when the table was written
  std::vector<int64_t> offsets_;      // of each copy in buffer_
  std::unordered_map<const void*, size_t> index_;
  Tensor buffer_, table_;
  int64_t units_ = 0, refreshes_ = 0;
};

}  // namespace trident
