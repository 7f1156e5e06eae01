// The cuBLASLt and CUB shims of the CUDA emulation (kernels/cuda/emu/src/cublaslt.cpp,
// include/cub): cublasLtMatmul against a double-precision reference written here, in
// cuBLASLt's own column-major convention (D = epilogue(alpha op(A) op(B) + beta C)), for every
// transpose pair, odd sizes, padded leading dimensions, strided batches, beta 0 and 1, C apart
// from or aliased with D, f32 and bf16 and every emulated epilogue; the refusals a GPU would
// give (alignment, workspace, layouts, types, host pointers); that the work is queued on the
// stream with the call's arguments; and CUB's radix sort: stable, by a bit range.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cub/device/device_radix_sort.cuh>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

void check(cudaError_t e) {
  REQUIRE(e == cudaSuccess);
}

void check(cublasStatus_t s) {
  INFO(cublasLtGetStatusName(s));
  REQUIRE(s == CUBLAS_STATUS_SUCCESS);
}

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { check(cudaMalloc(&p, std::max<size_t>(bytes, 1))); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* at(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p) + byte_offset);
  }
};

// Storage types; host images hold every element as the float it stores.
enum class Type { F32, BF16 };
cudaDataType_t cuda_type(Type t) {
  return t == Type::F32 ? CUDA_R_32F : CUDA_R_16BF;
}
size_t size_of(Type t) {
  return t == Type::F32 ? 4 : 2;
}
float stored(Type t, float x) {
  return t == Type::F32 ? x : __bfloat162float(__float2bfloat16_rn(x));
}
// What cudaMemset(0x7f) leaves in an element: marks elements a matmul must not write.
float untouched(Type t) {
  if (t == Type::BF16) return __bfloat162float(__ushort_as_bfloat16(0x7f7f));
  const uint32_t bits = 0x7f7f7f7fu;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void upload(const std::vector<float>& h, Type t, void* dst) {
  if (t == Type::F32) {
    check(cudaMemcpy(dst, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return;
  }
  std::vector<__nv_bfloat16> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = __float2bfloat16_rn(h[i]);
  check(cudaMemcpy(dst, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
}

std::vector<float> download(const void* src, size_t count, Type t) {
  std::vector<float> h(count);
  if (t == Type::F32) {
    check(cudaMemcpy(h.data(), src, count * 4, cudaMemcpyDeviceToHost));
  } else {
    std::vector<__nv_bfloat16> b(count);
    check(cudaMemcpy(b.data(), src, count * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; ++i) h[i] = __bfloat162float(b[i]);
  }
  return h;
}

// RAII owners of the cuBLASLt objects.
struct Handle {
  cublasLtHandle_t h = nullptr;
  Handle() { check(cublasLtCreate(&h)); }
  ~Handle() { cublasLtDestroy(h); }
};
struct Desc {
  cublasLtMatmulDesc_t d = nullptr;
  explicit Desc(cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
    check(cublasLtMatmulDescCreate(&d, compute, CUDA_R_32F));
  }
  ~Desc() { cublasLtMatmulDescDestroy(d); }
  template <typename V>
  void set(cublasLtMatmulDescAttributes_t a, const V& v) {
    check(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof v));
  }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int32_t batch = 1,
         int64_t stride = 0) {
    check(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld));
    check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                           sizeof batch));
    check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                           sizeof stride));
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(l); }
};
struct Pref {
  cublasLtMatmulPreference_t p = nullptr;
  Pref() { check(cublasLtMatmulPreferenceCreate(&p)); }
  ~Pref() { cublasLtMatmulPreferenceDestroy(p); }
  template <typename V>
  void set(cublasLtMatmulPreferenceAttributes_t a, const V& v) {
    check(cublasLtMatmulPreferenceSetAttribute(p, a, &v, sizeof v));
  }
};

int64_t round8(int64_t x) {
  return (x + 7) / 8 * 8;
}

// A column-major matrix stored in a buffer of `batch` matrices `stride` elements apart.
struct Stored {
  int64_t rows = 0, cols = 0, ld = 0, stride = 0;
  int32_t batch = 1;
  std::vector<float> h;  // the whole buffer, as stored
  int64_t size() const { return int64_t(batch - 1) * stride + ld * (cols - 1) + rows; }
  float& at(int32_t b, int64_t r, int64_t c) { return h[size_t(b * stride + r + c * ld)]; }
  float at(int32_t b, int64_t r, int64_t c) const { return h[size_t(b * stride + r + c * ld)]; }
};

// rows x cols per batch with ld = rows + pad and batch gaps; padding holds `fill`.
Stored make_stored(int64_t rows, int64_t cols, int64_t pad, int32_t batch, float fill) {
  Stored s;
  s.rows = rows;
  s.cols = cols;
  s.ld = rows + pad;
  s.batch = batch;
  s.stride = batch > 1 ? round8(s.ld * cols) + 8 : 0;  // 16-byte aligned strides
  s.h.assign(size_t(std::max<int64_t>(s.size(), 1)), fill);
  return s;
}

void randomize(Stored& s, Type t, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  for (int32_t b = 0; b < s.batch; ++b) {
    for (int64_t c = 0; c < s.cols; ++c) {
      for (int64_t r = 0; r < s.rows; ++r) s.at(b, r, c) = stored(t, u(rng));
    }
  }
}

constexpr double kPi = 3.14159265358979323846;
double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x)));
}
double gelu_grad(double x) {
  const double s = std::sqrt(2.0 / kPi), u = s * (x + 0.044715 * x * x * x), t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * 0.044715 * x * x);
}

struct Case {
  Type in = Type::F32, out = Type::F32;
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1, pad = 0;
  int32_t batch = 1;
  float alpha = 1.0f, beta = 0.0f;
  bool separate_c = true;  // C and D in different buffers (else C == D, in place)
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  bool use_algo = true;  // the heuristic's algorithm, else algo = nullptr

  std::string str() const {
    std::ostringstream o;
    o << (in == Type::F32 ? "f32" : "bf16") << "->" << (out == Type::F32 ? "f32" : "bf16")
      << " op(A)=" << (ta ? "T" : "N") << " op(B)=" << (tb ? "T" : "N") << " m=" << m << " n=" << n
      << " k=" << k << " pad=" << pad << " batch=" << batch << " alpha=" << alpha
      << " beta=" << beta << (separate_c ? " C!=D" : " C==D") << " epilogue=" << int(epilogue)
      << (use_algo ? " heuristic algo" : " algo=null");
    return o.str();
  }
};

bool has_bias_in(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS ||
         e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}
bool has_bias_grad(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_DGELU_BGRAD || e == CUBLASLT_EPILOGUE_BGRADA ||
         e == CUBLASLT_EPILOGUE_BGRADB;
}
bool has_aux(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
         e == CUBLASLT_EPILOGUE_DGELU || e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
}
bool is_dgelu(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_DGELU || e == CUBLASLT_EPILOGUE_DGELU_BGRAD;
}

// Compares got with want element by element: |got - want| <= rel |want| + 2e-5 scale + 1e-6,
// where scale bounds the magnitudes summed into want and rel is bf16's rounding (or 0).
struct Comparison {
  int64_t mismatches = 0;
  std::string first;
  void compare(const char* what, int64_t index, double got, double want, double scale, Type t) {
    const double rel = t == Type::BF16 ? 1.0 / 256 : 0.0;
    const double tol = rel * std::fabs(want) + 2e-5 * scale + 1e-6;
    if (!(std::fabs(got - want) <= tol)) {
      if (mismatches++ == 0) {
        std::ostringstream o;
        o << what << "[" << index << "] = " << got << ", want " << want << " (tolerance " << tol
          << ")";
        first = o.str();
      }
    }
  }
};

// Runs one matmul through the shim and checks D, the aux output and the bias gradient against
// the double reference, and that no element outside the described matrices changed.
void run_case(const Case& cs, const Handle& lt, std::mt19937& rng) {
  INFO(cs.str());
  const Type in = cs.in, out = cs.out;
  const int64_t m = cs.m, n = cs.n, k = cs.k;
  const cublasLtEpilogue_t epi = cs.epilogue;
  Stored a = make_stored(cs.ta ? k : m, cs.ta ? m : k, cs.pad, cs.batch, 0.0f);
  Stored b = make_stored(cs.tb ? n : k, cs.tb ? k : n, cs.pad + 1, cs.batch, 0.0f);
  Stored c = make_stored(m, n, cs.pad + 2, cs.batch, untouched(out));
  randomize(a, in, rng);
  randomize(b, in, rng);
  randomize(c, out, rng);
  Stored d = cs.separate_c ? make_stored(m, n, cs.pad, cs.batch, untouched(out)) : c;
  if (cs.separate_c) {
    for (int32_t bt = 0; bt < d.batch; ++bt) {  // what beta == 0 must not read
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t i = 0; i < m; ++i) d.at(bt, i, j) = std::nanf("");
      }
    }
  }
  const int64_t bias_len = epi == CUBLASLT_EPILOGUE_BGRADB ? n : m;
  const int64_t bias_stride = round8(bias_len) + 8;
  std::vector<float> bias(size_t(bias_stride * cs.batch), untouched(out));
  if (has_bias_in(epi)) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : bias) x = stored(out, u(rng));
  }
  Stored aux = make_stored(m, n, round8(m) + 8 - m, cs.batch, untouched(out));
  if (is_dgelu(epi)) randomize(aux, out, rng, -3.0f, 3.0f);

  DeviceBuffer da(a.h.size() * size_of(in)), db(b.h.size() * size_of(in));
  DeviceBuffer dc(c.h.size() * size_of(out)), dd(d.h.size() * size_of(out));
  DeviceBuffer dbias(bias.size() * size_of(out)), daux(aux.h.size() * size_of(out));
  upload(a.h, in, da.p);
  upload(b.h, in, db.p);
  upload(c.h, out, dc.p);
  upload(d.h, out, dd.p);
  upload(bias, out, dbias.p);
  upload(aux.h, out, daux.p);
  void* d_ptr = cs.separate_c ? dd.p : dc.p;

  Desc desc;
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, cs.ta ? CUBLAS_OP_T : CUBLAS_OP_N);
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, cs.tb ? CUBLAS_OP_T : CUBLAS_OP_N);
  desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, epi);
  if (has_bias_in(epi) || has_bias_grad(epi)) {
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, dbias.p);
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, cuda_type(out));
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, bias_stride);
  }
  if (has_aux(epi)) {
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, daux.p);
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, aux.ld);
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, aux.stride);
  }
  const Layout la(cuda_type(in), a.rows, a.cols, a.ld, a.batch, a.stride);
  const Layout lb(cuda_type(in), b.rows, b.cols, b.ld, b.batch, b.stride);
  const Layout lc(cuda_type(out), c.rows, c.cols, c.ld, c.batch, c.stride);
  const Layout ld(cuda_type(out), d.rows, d.cols, d.ld, d.batch, d.stride);
  const size_t workspace_bytes = 1 << 16;
  DeviceBuffer workspace(workspace_bytes);
  Pref pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{workspace_bytes});
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  check(cublasLtMatmulAlgoGetHeuristic(lt.h, desc.d, la.l, lb.l, lc.l, ld.l, pref.p, 1, &result,
                                       &found));
  REQUIRE(found == 1);
  REQUIRE(result.state == CUBLAS_STATUS_SUCCESS);
  REQUIRE(result.workspaceSize <= workspace_bytes);
  check(cublasLtMatmul(lt.h, desc.d, &cs.alpha, da.p, la.l, db.p, lb.l, &cs.beta, dc.p, lc.l, d_ptr,
                       ld.l, cs.use_algo ? &result.algo : nullptr, workspace.p, workspace_bytes,
                       0));
  check(cudaStreamSynchronize(0));

  const std::vector<float> got_d = download(d_ptr, d.h.size(), out);
  const std::vector<float> got_aux = download(daux.p, aux.h.size(), out);
  const std::vector<float> got_bias = download(dbias.p, bias.size(), out);
  const auto op_a = [&](int32_t bt, int64_t i, int64_t p) {
    return double(cs.ta ? a.at(bt, p, i) : a.at(bt, i, p));
  };
  const auto op_b = [&](int32_t bt, int64_t p, int64_t j) {
    return double(cs.tb ? b.at(bt, j, p) : b.at(bt, p, j));
  };

  Comparison cmp;
  std::vector<bool> written(d.h.size(), false), aux_written(aux.h.size(), false);
  std::vector<bool> bias_written(bias.size(), false);
  for (int32_t bt = 0; bt < cs.batch; ++bt) {
    std::vector<double> row_sum(size_t(m), 0.0), row_scale(size_t(m), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        double v = 0.0, scale = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          v += op_a(bt, i, p) * op_b(bt, p, j);
          scale += std::fabs(op_a(bt, i, p) * op_b(bt, p, j));
        }
        v *= cs.alpha;
        scale *= std::fabs(cs.alpha);
        if (cs.beta != 0.0f) {
          v += double(cs.beta) * c.at(bt, i, j);
          scale += std::fabs(double(cs.beta) * c.at(bt, i, j));
        }
        if (has_bias_in(epi)) {
          v += bias[size_t(bt * bias_stride + i)];
          scale += std::fabs(bias[size_t(bt * bias_stride + i)]);
        }
        const int64_t aux_index = bt * aux.stride + i + j * aux.ld;
        if (epi == CUBLASLT_EPILOGUE_GELU_AUX || epi == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
          cmp.compare("aux", aux_index, got_aux[size_t(aux_index)], v, scale, out);
          aux_written[size_t(aux_index)] = true;
        }
        if (epi == CUBLASLT_EPILOGUE_RELU || epi == CUBLASLT_EPILOGUE_RELU_BIAS) {
          v = std::max(v, 0.0);
        } else if (epi == CUBLASLT_EPILOGUE_GELU || epi == CUBLASLT_EPILOGUE_GELU_BIAS ||
                   epi == CUBLASLT_EPILOGUE_GELU_AUX || epi == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
          v = gelu(v);
          scale *= 1.2;  // gelu' <= 1.13
        } else if (is_dgelu(epi)) {
          const double g = gelu_grad(aux.h[size_t(aux_index)]);
          v *= g;
          scale *= std::fabs(g);
        }
        row_sum[size_t(i)] += v;
        row_scale[size_t(i)] += scale;
        const int64_t index = bt * d.stride + i + j * d.ld;
        cmp.compare("D", index, got_d[size_t(index)], v, scale, out);
        written[size_t(index)] = true;
      }
    }
    for (int64_t l = 0; l < bias_len && has_bias_grad(epi); ++l) {
      double want = 0.0, scale = 0.0;
      if (epi == CUBLASLT_EPILOGUE_DGELU_BGRAD) {
        want = row_sum[size_t(l)];
        scale = row_scale[size_t(l)];
      }
      for (int64_t p = 0; p < k; ++p) {
        const double x = epi == CUBLASLT_EPILOGUE_BGRADA   ? op_a(bt, l, p)
                         : epi == CUBLASLT_EPILOGUE_BGRADB ? op_b(bt, p, l)
                                                           : 0.0;
        want += x;
        scale += std::fabs(x);
      }
      const int64_t index = bt * bias_stride + l;
      cmp.compare("bias gradient", index, got_bias[size_t(index)], want, scale, out);
      bias_written[size_t(index)] = true;
    }
  }
  // Nothing outside the matrices changed (padding rows, batch gaps, the rest of bias / aux).
  for (size_t i = 0; i < d.h.size(); ++i) {
    if (!written[i]) cmp.compare("D outside the matrix", int64_t(i), got_d[i], d.h[i], 0, out);
  }
  for (size_t i = 0; i < aux.h.size(); ++i) {
    if (!aux_written[i]) {
      cmp.compare("aux outside the matrix", int64_t(i), got_aux[i], aux.h[i], 0, out);
    }
  }
  for (size_t i = 0; i < bias.size(); ++i) {
    if (!bias_written[i]) cmp.compare("bias outside", int64_t(i), got_bias[i], bias[i], 0, out);
  }
  INFO(cmp.first);
  CHECK(cmp.mismatches == 0);
}

}  // namespace

TEST_CASE(
    "cublasLtMatmul matches a double reference for every transpose, size, ld, batch, "
    "beta and type",
    "[cuda-emu][cublaslt]") {
  const Handle lt;
  std::mt19937 rng(1234);
  const int64_t sizes[] = {1, 3, 17, 33};
  int index = 0;
  for (Type t : {Type::F32, Type::BF16}) {
    for (int trans = 0; trans < 4; ++trans) {
      for (int64_t m : sizes) {
        for (int64_t n : sizes) {
          for (int64_t k : sizes) {
            for (int variant = 0; variant < 4; ++variant, ++index) {
              Case cs;
              cs.in = cs.out = t;
              cs.ta = (trans & 1) != 0;
              cs.tb = (trans & 2) != 0;
              cs.m = m;
              cs.n = n;
              cs.k = k;
              cs.beta = (variant & 1) != 0 ? 1.0f : 0.0f;
              cs.separate_c = (variant & 2) != 0 || cs.beta == 0.0f;
              cs.pad = index % 3 == 0 ? 0 : 3;
              cs.batch = index % 2 == 0 ? 1 : 3;
              cs.alpha = index % 5 == 4 ? -0.5f : 1.0f;
              cs.use_algo = index % 7 != 6;
              run_case(cs, lt, rng);
            }
          }
        }
      }
    }
  }
  // Larger than the emulation's 64-row x 4-column accumulator tiles, with partial tiles.
  for (Type t : {Type::F32, Type::BF16}) {
    for (int trans = 0; trans < 4; ++trans) {
      Case cs;
      cs.in = cs.out = t;
      cs.ta = (trans & 1) != 0;
      cs.tb = (trans & 2) != 0;
      cs.m = 131;
      cs.n = 70;
      cs.k = 67;
      cs.pad = 5;
      cs.batch = 2;
      cs.beta = 1.0f;
      run_case(cs, lt, rng);
    }
  }
  // bf16 A and B with f32 C and D, and alpha = 0 (A and B are not read).
  for (int trans = 0; trans < 4; ++trans) {
    Case cs;
    cs.in = Type::BF16;
    cs.ta = (trans & 1) != 0;
    cs.tb = (trans & 2) != 0;
    cs.m = 17;
    cs.n = 33;
    cs.k = 3;
    cs.pad = 2;
    cs.batch = 2;
    cs.beta = 1.0f;
    run_case(cs, lt, rng);
    cs.alpha = 0.0f;
    run_case(cs, lt, rng);
  }
}

TEST_CASE("cublasLtMatmul epilogues: bias, ReLU, GELU, GELU with aux, dGELU and bias gradients",
          "[cuda-emu][cublaslt]") {
  const Handle lt;
  std::mt19937 rng(99);
  const cublasLtEpilogue_t epilogues[] = {
      CUBLASLT_EPILOGUE_DEFAULT,     CUBLASLT_EPILOGUE_RELU,          CUBLASLT_EPILOGUE_BIAS,
      CUBLASLT_EPILOGUE_RELU_BIAS,   CUBLASLT_EPILOGUE_GELU,          CUBLASLT_EPILOGUE_GELU_BIAS,
      CUBLASLT_EPILOGUE_GELU_AUX,    CUBLASLT_EPILOGUE_GELU_AUX_BIAS, CUBLASLT_EPILOGUE_DGELU,
      CUBLASLT_EPILOGUE_DGELU_BGRAD, CUBLASLT_EPILOGUE_BGRADA,        CUBLASLT_EPILOGUE_BGRADB};
  const int64_t shapes[][3] = {{17, 3, 33}, {33, 17, 1}, {3, 33, 17}, {1, 1, 3}};
  for (cublasLtEpilogue_t epi : epilogues) {
    for (Type t : {Type::F32, Type::BF16}) {
      for (int trans = 0; trans < 4; ++trans) {
        for (const auto& s : shapes) {
          Case cs;
          cs.in = cs.out = t;
          cs.epilogue = epi;
          cs.ta = (trans & 1) != 0;
          cs.tb = (trans & 2) != 0;
          cs.m = s[0];
          cs.n = s[1];
          cs.k = s[2];
          cs.pad = 1;
          cs.batch = trans == 3 ? 2 : 1;
          cs.beta = trans == 1 ? 1.0f : 0.0f;
          cs.separate_c = trans != 2 || cs.beta == 0.0f;
          run_case(cs, lt, rng);
        }
      }
    }
  }
}

namespace {

// A small f32 problem, D (4 x 4) = A (4 x 4) B (4 x 4), for the refusals.
struct Small {
  Handle lt;
  Desc desc;
  DeviceBuffer a{4096}, b{4096}, d{4096}, workspace{1 << 16};
  float alpha = 1.0f, beta = 0.0f;
  std::vector<float> ha, hb;

  Small() : ha(64), hb(64) {
    for (int i = 0; i < 64; ++i) {
      ha[size_t(i)] = float(i % 7) - 3.0f;
      hb[size_t(i)] = float(i % 5) - 2.0f;
    }
    upload(ha, Type::F32, a.p);
    upload(hb, Type::F32, b.p);
  }
  cublasStatus_t heuristic(const Layout& la, const Layout& lb, const Layout& ld, const Pref& pref,
                           cublasLtMatmulHeuristicResult_t* result) {
    int found = 0;
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt.h, desc.d, la.l, lb.l, ld.l, ld.l,
                                                            pref.p, 1, result, &found);
    if (s == CUBLAS_STATUS_SUCCESS) REQUIRE(found == 1);
    return s;
  }
  cublasStatus_t matmul(const void* A, const Layout& la, const void* B, const Layout& lb, void* D,
                        const Layout& ld, const cublasLtMatmulAlgo_t* algo,
                        size_t workspace_bytes = 1 << 16) {
    return cublasLtMatmul(lt.h, desc.d, &alpha, A, la.l, B, lb.l, &beta, D, ld.l, D, ld.l, algo,
                          workspace.p, workspace_bytes, 0);
  }
  // D (column-major, ld 4) of A and B at these element offsets, computed here.
  std::vector<float> expected(int a_offset, int b_offset) const {
    std::vector<float> want(16, 0.0f);
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 4; ++i) {
        for (int p = 0; p < 4; ++p) {
          want[size_t(i + 4 * j)] +=
              ha[size_t(a_offset + i + 4 * p)] * hb[size_t(b_offset + p + 4 * j)];
        }
      }
    }
    return want;
  }
};

}  // namespace

TEST_CASE("cublasLtMatmul refuses pointers less aligned than the heuristic's algorithm assumed",
          "[cuda-emu][cublaslt]") {
  Small s;
  const Layout l(CUDA_R_32F, 4, 4, 4);
  cublasLtMatmulHeuristicResult_t result{};

  SECTION("the default preference assumes 16-byte operands") {
    const Pref pref;
    check(s.heuristic(l, l, l, pref, &result));
    CHECK(s.matmul(s.a.at(4), l, s.b.p, l, s.d.p, l, &result.algo) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.at(8), l, &result.algo) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(s.matmul(s.a.at(16), l, s.b.at(32), l, s.d.at(48), l, &result.algo) ==
          CUBLAS_STATUS_SUCCESS);
    check(cudaStreamSynchronize(0));
  }
  SECTION("a preference that states 4-byte alignment gets an algorithm that accepts it") {
    Pref pref;
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t{4});
    check(s.heuristic(l, l, l, pref, &result));
    check(s.matmul(s.a.at(4), l, s.b.p, l, s.d.p, l, &result.algo));
    check(cudaStreamSynchronize(0));
    const std::vector<float> got = download(s.d.p, 16, Type::F32);
    const std::vector<float> want = s.expected(1, 0);
    for (size_t i = 0; i < 16; ++i) CHECK(got[i] == want[i]);
    // B still has to be 16-byte aligned.
    CHECK(s.matmul(s.a.at(4), l, s.b.at(4), l, s.d.p, l, &result.algo) ==
          CUBLAS_STATUS_NOT_SUPPORTED);
  }
  SECTION("a batch stride counts like the pointer") {
    const Layout la(CUDA_R_32F, 4, 4, 4, 2, 17);  // 68-byte stride: 4-byte aligned
    const Layout lb(CUDA_R_32F, 4, 4, 4, 2, 16);
    const Layout ld(CUDA_R_32F, 4, 4, 4, 2, 16);
    Pref pref;
    check(s.heuristic(la, lb, ld, pref, &result));
    CHECK(s.matmul(s.a.p, la, s.b.p, lb, s.d.p, ld, &result.algo) == CUBLAS_STATUS_NOT_SUPPORTED);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t{4});
    check(s.heuristic(la, lb, ld, pref, &result));
    check(s.matmul(s.a.p, la, s.b.p, lb, s.d.p, ld, &result.algo));
    check(cudaStreamSynchronize(0));
    const std::vector<float> got = download(s.d.at(16 * 4), 16, Type::F32);
    const std::vector<float> want = s.expected(17, 16);
    for (size_t i = 0; i < 16; ++i) CHECK(got[i] == want[i]);
  }
  SECTION("the bias pointer the heuristic saw sets the bias alignment") {
    DeviceBuffer bias(256);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    s.desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias.p);
    const Pref pref;
    check(s.heuristic(l, l, l, pref, &result));
    s.desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias.at<const void>(4));
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, &result.algo) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
  SECTION("an alignment below the element size has no algorithm") {
    Pref pref;
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t{2});
    CHECK(s.heuristic(l, l, l, pref, &result) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
  SECTION("without an algorithm, element alignment is enough") {
    check(s.matmul(s.a.at(4), l, s.b.at(8), l, s.d.at(12), l, nullptr));
    check(cudaStreamSynchronize(0));
    CHECK(s.matmul(s.a.at(2), l, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
}

TEST_CASE("cublasLtMatmul refuses a workspace smaller than the algorithm's",
          "[cuda-emu][cublaslt]") {
  Small s;
  const Layout l(CUDA_R_32F, 4, 4, 4);
  Pref pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{1} << 16);
  cublasLtMatmulHeuristicResult_t result{};
  check(s.heuristic(l, l, l, pref, &result));
  REQUIRE(result.workspaceSize > 0);
  CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, &result.algo, result.workspaceSize - 1) ==
        CUBLAS_STATUS_INVALID_VALUE);
  check(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, &result.algo, result.workspaceSize));
  check(cudaStreamSynchronize(0));
  // A preference without workspace gets an algorithm that needs none.
  const Pref none;
  check(s.heuristic(l, l, l, none, &result));
  CHECK(result.workspaceSize == 0);
  check(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, &result.algo, 0));
  check(cudaStreamSynchronize(0));
}

TEST_CASE("cublasLtMatmul refuses bad layouts, types, handles and host memory",
          "[cuda-emu][cublaslt]") {
  Small s;
  const Layout l(CUDA_R_32F, 4, 4, 4);
  const Pref pref;
  cublasLtMatmulHeuristicResult_t result{};

  SECTION("ld < rows") {
    const Layout bad(CUDA_R_32F, 4, 4, 3);
    CHECK(s.heuristic(bad, l, l, pref, &result) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.matmul(s.a.p, bad, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, bad, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  }
  SECTION("m, n, k or batch counts that do not agree") {
    const Layout k5(CUDA_R_32F, 4, 5, 4 + 1);
    const Layout b3(CUDA_R_32F, 4, 3, 4);
    const Layout batched(CUDA_R_32F, 4, 4, 4, 2, 16);
    CHECK(s.matmul(s.a.p, k5, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.matmul(s.a.p, l, s.b.p, b3, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.matmul(s.a.p, batched, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.heuristic(l, l, batched, pref, &result) == CUBLAS_STATUS_INVALID_VALUE);
  }
  SECTION("unsupported type combinations") {
    const Layout bf(CUDA_R_16BF, 4, 4, 4);
    const Layout half(CUDA_R_16F, 4, 4, 4);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, bf, nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(s.matmul(s.a.p, bf, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(s.heuristic(half, half, half, pref, &result) == CUBLAS_STATUS_NOT_SUPPORTED);
    Desc tf32(CUBLAS_COMPUTE_32F_FAST_TF32);
    int found = 1;
    CHECK(cublasLtMatmulAlgoGetHeuristic(s.lt.h, tf32.d, l.l, l.l, l.l, l.l, pref.p, 1, &result,
                                         &found) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(found == 0);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    s.desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, s.workspace.p);
    s.desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_16BF);
    CHECK(s.heuristic(l, l, l, pref, &result) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
  SECTION("epilogues without their pointers") {
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_GELU_BIAS);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_GELU_AUX);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, s.workspace.p);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t{4});  // not a multiple of 8
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t{8});
    check(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, nullptr));
    check(cudaStreamSynchronize(0));
    s.desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_RELU_AUX);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_NOT_SUPPORTED);
  }
  SECTION("host memory and ranges past the allocation") {
    std::vector<float> host(64, 1.0f);
    CHECK(s.matmul(host.data(), l, s.b.p, l, s.d.p, l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(s.matmul(s.a.p, l, s.b.p, l, host.data(), l, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
    const Layout huge(CUDA_R_32F, 4, 4, 4, 3, 4096 / 4);  // the last batch lies past `a`
    CHECK(s.matmul(s.a.p, huge, s.b.p, huge, s.d.p, huge, nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  }
  SECTION("null and destroyed handles and descriptors") {
    CHECK(cublasLtMatmul(nullptr, s.desc.d, &s.alpha, s.a.p, l.l, s.b.p, l.l, &s.beta, s.d.p, l.l,
                         s.d.p, l.l, nullptr, nullptr, 0, 0) == CUBLAS_STATUS_NOT_INITIALIZED);
    CHECK(cublasLtMatmul(s.lt.h, nullptr, &s.alpha, s.a.p, l.l, s.b.p, l.l, &s.beta, s.d.p, l.l,
                         s.d.p, l.l, nullptr, nullptr, 0, 0) == CUBLAS_STATUS_INVALID_VALUE);
    cublasLtMatrixLayout_t gone = nullptr;
    check(cublasLtMatrixLayoutCreate(&gone, CUDA_R_32F, 4, 4, 4));
    check(cublasLtMatrixLayoutDestroy(gone));
    CHECK(cublasLtMatmul(s.lt.h, s.desc.d, &s.alpha, s.a.p, gone, s.b.p, l.l, &s.beta, s.d.p, l.l,
                         s.d.p, l.l, nullptr, nullptr, 0, 0) == CUBLAS_STATUS_INVALID_VALUE);
    cublasLtMatmulAlgo_t blank{};
    CHECK(s.matmul(s.a.p, l, s.b.p, l, s.d.p, l, &blank) == CUBLAS_STATUS_INVALID_VALUE);
  }
}

TEST_CASE("cuBLASLt attributes have the real sizes, defaults and status names",
          "[cuda-emu][cublaslt]") {
  Desc desc;
  const int32_t op = CUBLAS_OP_T;
  CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op, 8) ==
        CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 4) ==
        CUBLAS_STATUS_INVALID_VALUE);
  check(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op, sizeof op));
  size_t size = 0;
  check(
      cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, nullptr, 0, &size));
  CHECK(size == sizeof(void*));
  int32_t got = -1;
  check(
      cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &got, sizeof got, &size));
  CHECK(got == CUBLAS_OP_T);
  uint32_t epilogue = 0;
  check(cublasLtMatmulDescGetAttribute(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                       sizeof epilogue, nullptr));
  CHECK(epilogue == CUBLASLT_EPILOGUE_DEFAULT);
  const Layout l(CUDA_R_16BF, 3, 5, 8);
  uint64_t rows = 0;
  check(cublasLtMatrixLayoutGetAttribute(l.l, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof rows,
                                         nullptr));
  CHECK(rows == 3);
  const Pref pref;
  uint32_t alignment = 0;
  check(cublasLtMatmulPreferenceGetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &alignment, sizeof alignment, nullptr));
  CHECK(alignment == 256);
  CHECK(std::string(cublasLtGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED)) ==
        "CUBLAS_STATUS_NOT_SUPPORTED");
  CHECK(std::string(cublasLtGetStatusString(CUBLAS_STATUS_SUCCESS)) != "");
  CHECK(int(CUBLASLT_EPILOGUE_GELU_AUX_BIAS) == 164);
  CHECK(int(CUBLASLT_EPILOGUE_DGELU_BGRAD) == 208);
  CHECK(int(CUBLAS_COMPUTE_32F) == 68);
}

TEST_CASE("cublasLtMatmul runs on its stream, in order, with the arguments of the call",
          "[cuda-emu][cublaslt]") {
  Small s;
  cudaStream_t stream = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    auto desc = std::make_unique<Desc>();
    auto l = std::make_unique<Layout>(CUDA_R_32F, 4, 4, 4);
    // The stream is busy for a while, then A is replaced; the matmul must see the new A.
    check(cudaLaunchHostFunc(
        stream, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); },
        nullptr));
    std::vector<float> new_a(64);
    for (int i = 0; i < 64; ++i) new_a[size_t(i)] = float((i * 3) % 11) - 5.0f;
    check(cudaMemcpyAsync(s.a.p, new_a.data(), 64 * 4, cudaMemcpyHostToDevice, stream));
    float alpha = 2.0f, beta = 0.0f;
    check(cublasLtMatmul(s.lt.h, desc->d, &alpha, s.a.p, l->l, s.b.p, l->l, &beta, s.d.p, l->l,
                         s.d.p, l->l, nullptr, nullptr, 0, stream));
    CHECK(cudaStreamQuery(stream) == cudaErrorNotReady);
    // Changing or destroying what the call read does not change the queued work.
    alpha = 100.0f;
    const int32_t op = CUBLAS_OP_T;
    desc->set(CUBLASLT_MATMUL_DESC_TRANSA, op);
    desc.reset();
    l.reset();
    check(cudaStreamSynchronize(stream));
    s.ha = new_a;
    const std::vector<float> want = s.expected(0, 0);
    const std::vector<float> got = download(s.d.p, 16, Type::F32);
    for (size_t i = 0; i < 16; ++i) CHECK(got[i] == 2.0f * want[i]);
  }
  check(cudaStreamDestroy(stream));
}

// ---------------------------------------------------------------------------------------------
// CUB

namespace {

template <typename K, typename V>
struct SortBuffers {
  DeviceBuffer keys_in, keys_out, values_in, values_out;
  explicit SortBuffers(size_t n)
      : keys_in(n * sizeof(K)),
        keys_out(n * sizeof(K)),
        values_in(n * sizeof(V)),
        values_out(n * sizeof(V)) {}
};

template <typename K, typename V>
void sort_pairs(const std::vector<K>& keys, const std::vector<V>& values, int begin_bit,
                int end_bit, std::vector<K>* keys_out, std::vector<V>* values_out,
                cudaStream_t stream = 0) {
  const size_t n = keys.size();
  SortBuffers<K, V> buf(n);
  check(cudaMemcpyAsync(buf.keys_in.p, keys.data(), n * sizeof(K), cudaMemcpyHostToDevice, stream));
  check(cudaMemcpyAsync(buf.values_in.p, values.data(), n * sizeof(V), cudaMemcpyHostToDevice,
                        stream));
  size_t temp_bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, buf.keys_in.template at<K>(), buf.keys_out.template at<K>(),
      buf.values_in.template at<V>(), buf.values_out.template at<V>(), int(n), begin_bit, end_bit,
      stream));
  REQUIRE(temp_bytes >= n * (sizeof(K) + sizeof(V)));
  DeviceBuffer temp(temp_bytes);
  check(cub::DeviceRadixSort::SortPairs(
      temp.p, temp_bytes, buf.keys_in.template at<K>(), buf.keys_out.template at<K>(),
      buf.values_in.template at<V>(), buf.values_out.template at<V>(), int(n), begin_bit, end_bit,
      stream));
  keys_out->resize(n);
  values_out->resize(n);
  check(cudaMemcpyAsync(keys_out->data(), buf.keys_out.p, n * sizeof(K), cudaMemcpyDeviceToHost,
                        stream));
  check(cudaMemcpyAsync(values_out->data(), buf.values_out.p, n * sizeof(V), cudaMemcpyDeviceToHost,
                        stream));
  check(cudaStreamSynchronize(stream));
}

}  // namespace

TEST_CASE("cub::DeviceRadixSort::SortPairs is a stable sort by the key bits asked for",
          "[cuda-emu][cub]") {
  std::mt19937 rng(7);
  const size_t n = 1000;
  std::vector<uint32_t> keys(n);
  std::vector<int32_t> positions(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i] = rng() % 37u;  // many duplicates
    positions[i] = int32_t(i);
  }
  cudaStream_t stream = nullptr;
  check(cudaStreamCreate(&stream));

  // (begin, end) bit ranges: all bits, the embedding's [0, end_bit), and a middle range.
  const int ranges[][2] = {{0, 32}, {0, 6}, {2, 5}, {3, 3}};
  for (const auto& r : ranges) {
    INFO("bits [" << r[0] << ", " << r[1] << ")");
    std::vector<uint32_t> got_keys;
    std::vector<int32_t> got_values;
    sort_pairs(keys, positions, r[0], r[1], &got_keys, &got_values, stream);
    const uint32_t mask = r[1] - r[0] >= 32 ? ~0u : ((1u << (r[1] - r[0])) - 1u);
    const auto digit = [&](uint32_t k) { return (k >> r[0]) & mask; };
    std::vector<size_t> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = i;
    std::stable_sort(want.begin(), want.end(),
                     [&](size_t x, size_t y) { return digit(keys[x]) < digit(keys[y]); });
    int64_t wrong = 0;
    for (size_t i = 0; i < n; ++i) {
      wrong += got_values[i] != int32_t(want[i]) || got_keys[i] != keys[want[i]];
    }
    CHECK(wrong == 0);
  }
  check(cudaStreamDestroy(stream));
}

TEST_CASE("cub::DeviceRadixSort::SortPairs orders signed and float keys as CUB does",
          "[cuda-emu][cub]") {
  const std::vector<float> keys = {2.5f, -1.0f, 0.0f, -0.0f, -3.5f, 2.5f, 1e-30f, -1.0f};
  std::vector<int> values(keys.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = int(i);
  std::vector<float> got_keys;
  std::vector<int> got_values;
  sort_pairs(keys, values, 0, 32, &got_keys, &got_values);
  CHECK(got_values == std::vector<int>{4, 1, 7, 3, 2, 6, 0, 5});

  const std::vector<int32_t> signed_keys = {5, -2, 0, -7, 5, -2};
  const std::vector<int> signed_values = {0, 1, 2, 3, 4, 5};
  std::vector<int32_t> got_signed;
  sort_pairs(signed_keys, signed_values, 0, 32, &got_signed, &got_values);
  CHECK(got_signed == std::vector<int32_t>{-7, -2, -2, 0, 5, 5});
  CHECK(got_values == std::vector<int>{3, 1, 5, 2, 0, 4});
}

TEST_CASE("cub::DeviceRadixSort::SortPairs refuses small temp storage and host memory",
          "[cuda-emu][cub]") {
  const int n = 16;
  SortBuffers<uint32_t, int> buf(n);
  size_t temp_bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, buf.keys_in.at<uint32_t>(),
                                        buf.keys_out.at<uint32_t>(), buf.values_in.at<int>(),
                                        buf.values_out.at<int>(), n));
  REQUIRE(temp_bytes > 0);
  DeviceBuffer temp(temp_bytes);
  size_t small = temp_bytes - 1;
  CHECK(cub::DeviceRadixSort::SortPairs(temp.p, small, buf.keys_in.at<uint32_t>(),
                                        buf.keys_out.at<uint32_t>(), buf.values_in.at<int>(),
                                        buf.values_out.at<int>(), n) == cudaErrorInvalidValue);
  std::vector<uint32_t> host(n);
  CHECK(cub::DeviceRadixSort::SortPairs(temp.p, temp_bytes, host.data(),
                                        buf.keys_out.at<uint32_t>(), buf.values_in.at<int>(),
                                        buf.values_out.at<int>(), n) == cudaErrorInvalidValue);
  CHECK(cub::DeviceRadixSort::SortPairs(
            temp.p, temp_bytes, buf.keys_in.at<uint32_t>(), buf.keys_out.at<uint32_t>(),
            buf.values_in.at<int>(), buf.values_out.at<int>(), n, 0, 33) == cudaErrorInvalidValue);
}
