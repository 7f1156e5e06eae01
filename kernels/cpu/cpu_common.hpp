// Private helpers shared by the CPU kernels (not installed): Eigen views of raw row-major
// buffers and the size below which a kernel stays on the calling thread.
#pragma once
#include <Eigen/Core>
#include <cstdint>

namespace trident::kernels::cpu::detail {

// Elements below which a kernel runs serially: an OpenMP fork/join costs a few microseconds,
// more than streaming this many floats.
inline constexpr int64_t kParallelGrain = int64_t{1} << 15;

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A row-major matrix view with an arbitrary row stride (the leading dimension).
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
// A contiguous 1-D array view, for vectorised transcendental functions (exp, tanh).
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

}  // namespace trident::kernels::cpu::detail
