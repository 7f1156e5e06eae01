// Element-wise, broadcast and reduction kernels against naive index-by-index references:
// broadcast shapes, transposed and sliced views, scalars, and sizes large enough for the
// multi-threaded paths.
#include <limits>
#include <stdexcept>

#include "kernel_test_utils.hpp"
#include "trident/kernels/cpu/elementwise.hpp"

namespace cpu = trident::kernels::cpu;
using cpu::BinaryOp;
using trident::kernels::test::random_vector;
using trident::kernels::test::require_close;

namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

// Offset of flat (row-major) element i of `shape` in a buffer with `strides`.
int64_t offset_of(int64_t i, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

template <typename T>
T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return T(0);
}

const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
    case BinaryOp::Div:
      return "div";
  }
  return "?";
}

// Runs binary_strided for every op on buffers a (a_size elements) and b, checks it bit-exactly
// against the per-element reference, and that nothing past the output was written.
template <typename T>
void check_binary(const std::vector<int64_t>& shape, int64_t a_size,
                  const std::vector<int64_t>& a_strides, int64_t b_size,
                  const std::vector<int64_t>& b_strides, const std::string& what) {
  const auto a = random_vector<T>(a_size, 21);
  const auto b = random_vector<T>(b_size, 22, 0.5, 1.5);  // safe divisor
  const int64_t n = numel(shape);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    std::vector<T> want(n + 1, T(-7)), out(n + 1, T(-7));
    for (int64_t i = 0; i < n; ++i) {
      want[i] = apply(op, a[offset_of(i, shape, a_strides)], b[offset_of(i, shape, b_strides)]);
    }
    cpu::binary_strided<T>(op, out.data(), a.data(), a_strides.data(), b.data(), b_strides.data(),
                           shape.data(), static_cast<int>(shape.size()));
    require_close(out, want, 0, 0, what + " " + op_name(op));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("binary_strided broadcasts like numpy", "[kernels][elementwise]", float,
                   double) {
  using T = TestType;
  // (2,3,4) op (3,1): b broadcast over dims 0 and 2.
  check_binary<T>({2, 3, 4}, 24, {12, 4, 1}, 3, {0, 1, 0}, "(2,3,4) op (3,1)");
  // A transposed view of a (4,3,2) buffer op a row vector (4).
  check_binary<T>({2, 3, 4}, 24, {1, 2, 6}, 4, {0, 0, 1}, "transposed (2,3,4) op (4)");
  // (2,1,4) op (1,3,1): both operands broadcast.
  check_binary<T>({2, 3, 4}, 8, {4, 0, 1}, 3, {0, 1, 0}, "(2,1,4) op (1,3,1)");
  // Scalar operands on either side.
  check_binary<T>({5, 7}, 35, {7, 1}, 1, {0, 0}, "(5,7) op scalar");
  check_binary<T>({5, 7}, 1, {0, 0}, 35, {7, 1}, "scalar op (5,7)");
  // Same shape, contiguous (coalesces to one dimension), and a 0-d tensor.
  check_binary<T>({3, 5, 7}, 105, {35, 7, 1}, 105, {35, 7, 1}, "contiguous (3,5,7)");
  check_binary<T>({}, 1, {}, 1, {}, "0-d");
  // Size-1 dimensions and an 8-d index space.
  check_binary<T>({2, 1, 3, 1, 2, 1, 2, 3}, 72, {36, 36, 12, 12, 6, 6, 3, 1}, 6,
                  {0, 0, 0, 0, 3, 0, 0, 1}, "8-d");
  // Large enough for several threads: broadcast middle dim, row-broadcast bias, transposed.
  check_binary<T>({67, 129, 9}, 67 * 9, {9, 0, 1}, 67 * 129 * 9, {129 * 9, 9, 1},
                  "large (67,1,9) op (67,129,9)");
  check_binary<T>({301, 200}, 301 * 200, {200, 1}, 200, {0, 1}, "large (301,200) op (200)");
  check_binary<T>({250, 173}, 250 * 173, {1, 250}, 250 * 173, {173, 1}, "large transposed");
}

TEST_CASE("binary_strided on an empty shape writes nothing and out may alias a",
          "[kernels][elementwise]") {
  const std::vector<int64_t> shape = {3, 0, 2}, strides = {0, 2, 1};
  float sentinel = 5.f, a = 1.f, b = 2.f;
  cpu::binary_strided<float>(BinaryOp::Add, &sentinel, &a, strides.data(), &b, strides.data(),
                             shape.data(), 3);
  REQUIRE(sentinel == 5.f);

  auto x = random_vector<double>(60000, 5);
  const auto y = random_vector<double>(60000, 6);
  std::vector<double> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = x[i] * y[i];
  const std::vector<int64_t> big = {60000}, unit = {1};
  cpu::binary_strided<double>(BinaryOp::Mul, x.data(), x.data(), unit.data(), y.data(), unit.data(),
                              big.data(), 1);
  require_close(x, want, 0, 0, "in-place mul");
}

TEST_CASE("strided kernels reject more than 8 dimensions", "[kernels][elementwise]") {
  std::vector<int64_t> shape(9, 1), strides(9, 0);
  bool reduce[9] = {};
  float x = 1, y = 1, out = 0;
  REQUIRE_THROWS_AS(cpu::binary_strided<float>(BinaryOp::Add, &out, &x, strides.data(), &y,
                                               strides.data(), shape.data(), 9),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(cpu::copy_strided<float>(&out, &x, strides.data(), shape.data(), 9),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(cpu::reduce_sum_to<float>(&out, &x, shape.data(), reduce, 9),
                    std::invalid_argument);
}

TEMPLATE_TEST_CASE("copy_strided gathers permuted, sliced and broadcast views",
                   "[kernels][elementwise]", float, double) {
  using T = TestType;
  const auto check = [](const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                        int64_t buffer, int64_t start, const std::string& what) {
    const auto in = random_vector<T>(buffer, 31);
    const int64_t n = numel(shape);
    std::vector<T> want(n + 1, T(-3)), out(n + 1, T(-3));
    for (int64_t i = 0; i < n; ++i) want[i] = in[start + offset_of(i, shape, strides)];
    cpu::copy_strided<T>(out.data(), in.data() + start, strides.data(), shape.data(),
                         static_cast<int>(shape.size()));
    require_close(out, want, 0, 0, what);
  };
  check({3, 4, 5}, {1, 15, 3}, 60, 0, "permute (4,5,3)->(3,4,5)");
  check({7, 5}, {10, 2}, 70, 1, "every second column from 1");
  check({4, 6}, {1, 0}, 4, 0, "broadcast stride 0");
  check({2, 3, 4}, {12, 4, 1}, 24, 0, "contiguous");
  check({}, {}, 1, 0, "0-d");
  check({300, 250}, {1, 300}, 75000, 0, "large transpose");
  check({90, 40, 11}, {880, 11, 1}, 90 * 80 * 11, 0, "large slice of the middle dim");
}

namespace {

template <typename T>
void check_reduce(const std::vector<int64_t>& shape, double rtol, uint32_t seed) {
  const int nd = static_cast<int>(shape.size());
  const int64_t n = numel(shape);
  const auto in = random_vector<T>(n, seed);
  for (int mask = 0; mask < (1 << nd); ++mask) {
    bool reduce[8];
    std::vector<int64_t> out_shape(shape);
    for (int d = 0; d < nd; ++d) {
      reduce[d] = (mask >> d) & 1;
      if (reduce[d]) out_shape[d] = 1;
    }
    std::vector<int64_t> out_strides(nd);
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; --d) {
      out_strides[d] = reduce[d] ? 0 : s;
      s *= out_shape[d];
    }
    std::vector<double> want(s + 1, 0.0);
    want[s] = -9;
    for (int64_t i = 0; i < n; ++i) want[offset_of(i, shape, out_strides)] += in[i];
    std::vector<T> out(s + 1, std::numeric_limits<T>::quiet_NaN());  // must be overwritten
    out[s] = T(-9);
    cpu::reduce_sum_to<T>(out.data(), in.data(), shape.data(), reduce, nd);
    require_close(out, want, rtol, rtol, "reduce mask " + std::to_string(mask));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("reduce_sum_to sums any subset of dimensions", "[kernels][elementwise]", float,
                   double) {
  const double rtol = std::is_same<TestType, float>::value ? 1e-6 : 1e-13;
  check_reduce<TestType>({2, 3, 4}, rtol, 41);
  check_reduce<TestType>({2, 1, 3, 4}, rtol, 42);
  check_reduce<TestType>({5, 2, 3, 2, 3}, rtol, 43);
  check_reduce<TestType>({40, 33, 70}, rtol, 44);   // threaded, both inner layouts
  check_reduce<TestType>({3, 1200, 31}, rtol, 45);  // several column chunks
  check_reduce<TestType>({}, rtol, 46);             // 0-d: a copy

  // An empty reduced dimension sums to zero.
  const std::vector<int64_t> shape = {2, 0, 3};
  const bool reduce[3] = {false, true, false};
  std::vector<TestType> out(6, TestType(5));
  cpu::reduce_sum_to<TestType>(out.data(), nullptr, shape.data(), reduce, 3);
  require_close(out, std::vector<double>(6, 0.0), 0, 0, "empty reduced dimension");
}

TEMPLATE_TEST_CASE("contiguous element-wise kernels", "[kernels][elementwise]", float, double) {
  using T = TestType;
  for (int64_t n : {37, 100003}) {
    const auto a = random_vector<T>(n, 51), b = random_vector<T>(n, 52);
    std::vector<T> out(n), want(n);
    cpu::add<T>(out.data(), a.data(), b.data(), n);
    for (int64_t i = 0; i < n; ++i) want[i] = a[i] + b[i];
    require_close(out, want, 0, 0, "add");

    cpu::scale<T>(out.data(), a.data(), T(-1.75), n);
    for (int64_t i = 0; i < n; ++i) want[i] = T(-1.75) * a[i];
    require_close(out, want, 0, 0, "scale");

    std::vector<T> y(b);
    cpu::axpy<T>(y.data(), a.data(), T(0.3), n);
    for (int64_t i = 0; i < n; ++i) want[i] = b[i] + T(0.3) * a[i];
    require_close(y, want, 1e-7, 1e-7, "axpy");

    cpu::fill<T>(out.data(), T(2.5), n);
    require_close(out, std::vector<T>(n, T(2.5)), 0, 0, "fill");

    double s = 0, ss = 0, sabs = 0;
    for (int64_t i = 0; i < n; ++i) {
      s += static_cast<double>(a[i]);
      ss += static_cast<double>(a[i]) * a[i];
      sabs += std::abs(static_cast<double>(a[i]));
    }
    REQUIRE(std::abs(cpu::sum<T>(a.data(), n) - s) <= 1e-13 * sabs);
    REQUIRE(std::abs(cpu::sum_squares<T>(a.data(), n) - ss) <= 1e-13 * ss);
  }
  // Accumulation is in double even for float input: 2^24 + many ones is not lost.
  std::vector<T> big(40001, T(1));
  big[0] = T(16777216);
  REQUIRE(cpu::sum<T>(big.data(), 40001) == 16777216.0 + 40000.0);
}

TEMPLATE_TEST_CASE("add_bias and bias_backward", "[kernels][elementwise]", float, double) {
  using T = TestType;
  const double rtol = std::is_same<T, float>::value ? 1e-6 : 1e-13;
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{5, 12}, {300, 1025}, {4000, 12}, {200, 384}}) {
    const auto in = random_vector<T>(rows * cols, 61), bias = random_vector<T>(cols, 62);
    std::vector<T> out(in), want(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) want[r * cols + c] = in[r * cols + c] + bias[c];
    }
    cpu::add_bias<T>(out.data(), out.data(), bias.data(), rows, cols);  // in place
    require_close(out, want, 0, 0, "add_bias");

    std::vector<double> dbias_want(cols, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) dbias_want[c] += in[r * cols + c];
    }
    std::vector<T> dbias(cols, std::numeric_limits<T>::quiet_NaN());
    cpu::bias_backward<T>(dbias.data(), in.data(), rows, cols);
    require_close(dbias, dbias_want, rtol, rtol, "bias_backward");
  }
}

TEST_CASE("convert between float and double", "[kernels][elementwise]") {
  for (int64_t n : {37, 70001}) {
    const auto d = random_vector<double>(n, 71, -1e3, 1e3);
    std::vector<float> f(n), f_want(n);
    for (int64_t i = 0; i < n; ++i) f_want[i] = static_cast<float>(d[i]);
    cpu::convert<float, double>(f.data(), d.data(), n);
    require_close(f, f_want, 0, 0, "double -> float");
    std::vector<double> back(n);
    cpu::convert<double, float>(back.data(), f.data(), n);
    require_close(back, f, 0, 0, "float -> double");
  }
}
