// The step's bf16 working copies of f32 master parameters (working_copies.hpp).
#include "trident/core/working_copies.hpp"

#include <algorithm>
#include <exception>

#include "cast_grad.hpp"
#include "trident/core/backend.hpp"

namespace trident {
namespace {
thread_local WorkingCopies* tls_current = nullptr;
constexpr int64_t kAlign = 8;  // elements: every copy starts 16-byte aligned (vector stores)
}  // namespace

WorkingCopies::Scope::Scope(WorkingCopies& copies) : copies_(copies), prev_(tls_current) {
  if (!copies_.learning_) copies_.refresh();
  tls_current = &copies_;
}

WorkingCopies::Scope::~Scope() {
  tls_current = prev_;
  // Not while an exception unwinds (build allocates): the next scope learns on.
  if (copies_.learning_ && std::uncaught_exceptions() == 0) copies_.build();
}

Tensor WorkingCopies::to(const Tensor& param, DType dtype) {
  if (!param.defined() || param.dtype() == dtype) return param;
  Tensor copy = find(param, dtype);
  if (!copy.defined()) return param.to(dtype);
  detail::record_cast(copy, param);
  return copy;
}

Tensor WorkingCopies::find(const Tensor& param, DType dtype) {
  WorkingCopies* c = tls_current;
  if (c == nullptr || dtype != DType::BF16 || param.dtype() != DType::F32 ||
      !param.is_contiguous() || param.numel() == 0) {
    return Tensor();
  }
  if (c->learning_) {
    c->learn(param);
    return Tensor();
  }
  const auto it = c->index_.find(param.raw_data());
  if (it == c->index_.end()) return Tensor();
  const size_t i = it->second;
  const Tensor& m = c->masters_[i];
  if (m.raw_data() != param.raw_data() || m.numel() != param.numel() ||
      m.device() != param.device()) {
    return Tensor();
  }
  return c->buffer_.slice(0, c->offsets_[i], c->offsets_[i] + m.numel()).reshape(param.shape());
}

void WorkingCopies::learn(const Tensor& param) {
  if (index_.count(param.raw_data()) != 0) return;
  if (!masters_.empty() && param.device() != masters_.front().device()) return;
  index_.emplace(param.raw_data(), masters_.size());
  masters_.push_back(param.detach());
}

void WorkingCopies::build() {
  learning_ = false;
  if (masters_.empty()) return;
  const Device dev = masters_.front().device();
  int64_t total = 0;
  for (const Tensor& m : masters_) {
    offsets_.push_back(total);
    total += (m.numel() + kAlign - 1) / kAlign * kAlign;
  }
  buffer_ = Tensor::empty({total}, DType::BF16, dev);
  const int count = static_cast<int>(masters_.size());
  table_ = Tensor::empty(
      {std::max<int64_t>(static_cast<int64_t>(backend_for(dev).convert_table_bytes(count)), 1)},
      DType::U8, dev);
  sources_.assign(masters_.size(), nullptr);  // written by the first refresh
}

void WorkingCopies::refresh() {
  if (masters_.empty()) return;
  Backend& be = backend_for(masters_.front().device());
  bool moved = false;
  for (size_t i = 0; i < masters_.size(); ++i) moved |= masters_[i].raw_data() != sources_[i];
  if (moved) {  // the first refresh, or a master's storage was replaced: rewrite the table
    std::vector<ConvertTensor> tensors(masters_.size());
    index_.clear();
    for (size_t i = 0; i < masters_.size(); ++i) {
      const Tensor& m = masters_[i];
      sources_[i] = m.raw_data();
      index_.emplace(m.raw_data(), i);
      tensors[i].src = static_cast<const float*>(m.raw_data());
      tensors[i].dst = static_cast<char*>(buffer_.raw_data()) + offsets_[i] * 2;
      tensors[i].n = m.numel();
    }
    units_ =
        be.convert_table_write(table_.raw_data(), tensors.data(), static_cast<int>(tensors.size()));
  }
  be.convert_to_bf16_table(table_.raw_data(), static_cast<int>(masters_.size()), units_);
  ++refreshes_;
}

}  // namespace trident
