// ggml's test-backend-ops for Trident: every Backend entry runs on CUDA and on the CPU backend
// on the same seeded random inputs, and each output must match the CPU's within 1e-4 (f32) or
// 2e-2 (bf16 storage; the CPU reference computes in f32 on the same bf16-rounded inputs) in
// ||gpu - cpu|| / ||cpu||. Buffers declared as statistics (layer norm's mean and rstd, cross
// entropy's lse, losses and slice statistics) are f32 in every run and held to 1e-4 in bf16 runs
// too, so a statistic rounded to bf16 fails. GPU outputs start as NaN, so an element a kernel
// never writes fails; elements the CPU leaves untouched (gemm's row padding) must stay
// untouched on the GPU too.
// A new op is covered by adding a case to kCases.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gpu_test_util.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"

namespace trident::gpu_test {
namespace {

// The buffers of one run of an op on one backend.
struct Buffers {
  Device dev;
  std::vector<Tensor>* f;        // float buffers (dtype of the run; f32 on the CPU)
  std::vector<Tensor>* i;        // int32 buffers
  std::vector<Tensor>* scratch;  // extra buffers the op allocates (kept alive)
  void* operator[](int k) const { return (*f)[static_cast<size_t>(k)].raw_data(); }
  const int32_t* ids(int k) const { return (*i)[static_cast<size_t>(k)].data<int32_t>(); }
  void* alloc(int64_t n, DType t) const {
    scratch->push_back(Tensor::empty({n}, t, dev));
    return scratch->back().raw_data();
  }
};

// Declares an op's inputs and outputs, runs it on both backends and compares.
class Harness {
 public:
  using Op = std::function<double(Backend&, DType, const Buffers&)>;
  Harness(DType t, uint64_t seed) : t_(t), rng(seed) {}

  int in(std::vector<float> v) { return add(std::move(v), Kind::In); }
  int out(int64_t n) { return add(std::vector<float>(static_cast<size_t>(n), NAN), Kind::Out); }
  int inout(std::vector<float> v) { return add(std::move(v), Kind::InOut); }
  // Per-row statistics: f32 (stats_dtype) whatever the run's dtype.
  int in_stats(std::vector<float> v) { return add(std::move(v), Kind::In, true); }
  int out_stats(int64_t n) {
    return add(std::vector<float>(static_cast<size_t>(n), NAN), Kind::Out, true);
  }
  int ints(std::vector<int32_t> v) {
    ints_.push_back(std::move(v));
    return static_cast<int>(ints_.size()) - 1;
  }
  std::vector<float> normal_(int64_t n, float scale = 1.0f, float shift = 0.0f) {
    return normal(static_cast<size_t>(n), rng, scale, shift);
  }
  std::vector<float> uniform_(int64_t n, float lo, float hi) {
    return uniform(static_cast<size_t>(n), rng, lo, hi);
  }

  // Runs op on both backends; compares every Out/InOut buffer, and the returned number when
  // `compare_result`.
  void check(const std::string& what, const Op& op, bool compare_result = false) {
    INFO(what << " (" << dtype_name(t_) << ")");
    std::vector<std::vector<float>> ref, got;
    const double r_cpu = run_on(Device::cpu(), DType::F32, op, ref);
    const double r_gpu = run_on(gpu(), t_, op, got);
    const double tol = t_ == DType::F32 ? 1e-4 : 2e-2;
    for (size_t k = 0; k < bufs_.size(); ++k) {
      if (bufs_[k].kind == Kind::In) continue;
      INFO("output buffer " << k << " of " << ref[k].size() << " elements");
      CHECK(error_vs_reference(got[k], ref[k]) < (bufs_[k].stats ? 1e-4 : tol));
    }
    if (compare_result) {
      INFO("returned " << r_gpu << ", CPU " << r_cpu);
      CHECK(std::abs(r_gpu - r_cpu) <= tol * std::max(std::abs(r_cpu), 1e-12));
    }
  }

 private:
  enum class Kind { In, Out, InOut };
  struct Buf {
    std::vector<float> init;
    Kind kind;
    bool stats;  // f32 in every run
  };

  int add(std::vector<float> v, Kind kind, bool stats = false) {
    if (t_ == DType::BF16 && !stats) {
      for (float& x : v) x = round_bf16(x);  // both backends see the same values
    }
    bufs_.push_back({std::move(v), kind, stats});
    return static_cast<int>(bufs_.size()) - 1;
  }

  double run_on(Device dev, DType t, const Op& op, std::vector<std::vector<float>>& outs) {
    std::vector<Tensor> f, i, scratch;
    for (const Buf& b : bufs_) {
      f.push_back(upload(b.init, b.stats ? stats_dtype(t) : t, dev));  // Out buffers hold NaN
    }
    for (const auto& v : ints_) i.push_back(upload_i32(v, dev));
    Backend& be = backend_for(dev);
    const double r = op(be, t, Buffers{dev, &f, &i, &scratch});
    be.synchronize();
    for (const Tensor& x : f) outs.push_back(download(x));
    return r;
  }

  // As rel_error, but where the reference is NaN (left unwritten) the GPU must be NaN too. A
  // buffer the CPU left entirely NaN belongs to another check of the same harness (an op with
  // several checks declares all their outputs): it passes when the GPU left it NaN as well.
  static double error_vs_reference(const std::vector<float>& got, const std::vector<float>& ref) {
    std::vector<float> g, r;
    for (size_t k = 0; k < ref.size(); ++k) {
      if (std::isnan(ref[k])) {
        if (!std::isnan(got[k])) return INFINITY;
        continue;
      }
      g.push_back(got[k]);
      r.push_back(ref[k]);
    }
    return r.empty() ? 0.0 : rel_error(g, r);
  }

  DType t_;
  std::vector<Buf> bufs_;
  std::vector<std::vector<int32_t>> ints_;

 public:
  std::mt19937_64 rng;
};

struct OpCase {
  const char* name;
  bool bf16;  // also runs with bf16 storage
  std::function<void(Harness&)> body;
};

const std::vector<OpCase> kCases = {
    {"fill", true,
     [](Harness& h) {
       const int o = h.out(1001);
       h.check("fill", [=](Backend& be, DType t, const Buffers& b) {
         be.fill(t, b[o], 0.375, 1001);
         return 0.0;
       });
     }},
    {"copy_strided", true,
     [](Harness& h) {
       const int x = h.in(h.normal_(4 * 5 * 6)), o1 = h.out(120), o2 = h.out(4 * 7 * 6);
       h.check("transposed (6,5,4) view", [=](Backend& be, DType t, const Buffers& b) {
         const int64_t shape[3] = {6, 5, 4}, strides[3] = {1, 6, 30};
         be.copy_strided(t, b[o1], b[x], strides, shape, 3);
         const int64_t shape2[3] = {4, 7, 6}, strides2[3] = {30, 0, 1};  // broadcast dim 1
         be.copy_strided(t, b[o2], b[x], strides2, shape2, 3);
         return 0.0;
       });
     }},
    {"binary_strided", true,
     [](Harness& h) {
       const int a = h.in(h.normal_(4 * 5 * 6)), bb = h.in(h.uniform_(4 * 5 * 6, 0.5f, 2.0f));
       for (int op = 0; op < 4; ++op) {
         const int o1 = h.out(120), o2 = h.out(120), o3 = h.out(120), o4 = h.out(120);
         h.check("binary op " + std::to_string(op), [=](Backend& be, DType t, const Buffers& b) {
           const auto kind = static_cast<BinaryOpKind>(op);
           const int64_t shape[3] = {4, 5, 6}, full[3] = {30, 6, 1}, row[3] = {0, 0, 1},
                         outer[3] = {6, 0, 1}, mid[3] = {0, 1, 0}, scalar[3] = {0, 0, 0};
           be.binary_strided(kind, t, b[o1], b[a], full, b[bb], full, shape, 3);
           be.binary_strided(kind, t, b[o2], b[a], full, b[bb], row, shape, 3);
           be.binary_strided(kind, t, b[o3], b[a], outer, b[bb], mid, shape, 3);
           be.binary_strided(kind, t, b[o4], b[a], full, b[bb], scalar, shape, 3);
           return 0.0;
         });
       }
     }},
    {"reduce_sum_to", true,
     [](Harness& h) {
       const int x = h.in(h.normal_(4 * 5 * 6)), big = h.in(h.normal_(300 * 70));
       const int o02 = h.out(5), o1 = h.out(24), o0 = h.out(30), o2 = h.out(20), oall = h.out(1),
                 rows = h.out(70), cols = h.out(300);
       h.check("reduce_sum_to", [=](Backend& be, DType t, const Buffers& b) {
         const int64_t shape[3] = {4, 5, 6};
         const bool r02[3] = {true, false, true}, r1[3] = {false, true, false},
                    r0[3] = {true, false, false}, r2[3] = {false, false, true},
                    rall[3] = {true, true, true};
         be.reduce_sum_to(t, b[o02], b[x], shape, r02, 3);
         be.reduce_sum_to(t, b[o1], b[x], shape, r1, 3);
         be.reduce_sum_to(t, b[o0], b[x], shape, r0, 3);
         be.reduce_sum_to(t, b[o2], b[x], shape, r2, 3);
         be.reduce_sum_to(t, b[oall], b[x], shape, rall, 3);
         const int64_t s2[2] = {300, 70};
         const bool rr[2] = {true, false}, rc[2] = {false, true};
         be.reduce_sum_to(t, b[rows], b[big], s2, rr, 2);
         be.reduce_sum_to(t, b[cols], b[big], s2, rc, 2);
         return 0.0;
       });
     }},
    {"scale_axpy", true,
     [](Harness& h) {
       const int x = h.in(h.normal_(5000)), o = h.out(5000), y = h.inout(h.normal_(5000));
       h.check("scale, axpy", [=](Backend& be, DType t, const Buffers& b) {
         be.scale(t, b[o], b[x], -0.7, 5000);
         be.axpy(t, b[y], b[x], 1.25, 5000);
         return 0.0;
       });
     }},
    // The 16-byte paths' tails and fallbacks: odd lengths, and buffers starting 1 or 3 elements
    // (unaligned: element by element) or 8 elements (aligned: packs) past an aligned start.
    {"vectorised_tails", true,
     [](Harness& h) {
       for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1001}}) {
         for (const int shift : {0, 1, 3, 8}) {
           const int64_t len = n + shift;
           const int x = h.in(h.normal_(len, 2.0f)), z = h.in(h.uniform_(len, 0.5f, 2.0f)),
                     dout = h.in(h.normal_(len)), y = h.inout(h.normal_(len)), so = h.out(len),
                     sum = h.out(len), quo = h.out(len), ge = h.out(len), dge = h.out(len),
                     cv = h.out(len);
           h.check("n " + std::to_string(n) + " shift " + std::to_string(shift),
                   [=](Backend& be, DType t, const Buffers& b) {
                     const auto at = [&](int k) {
                       return static_cast<void*>(static_cast<char*>(b[k]) +
                                                 shift * static_cast<int>(dtype_size(t)));
                     };
                     be.scale(t, at(so), at(x), -0.7, n);
                     be.axpy(t, at(y), at(x), 1.25, n);
                     const int64_t shape[1] = {n}, unit[1] = {1};
                     be.binary_strided(BinaryOpKind::Add, t, at(sum), at(x), unit, at(z), unit,
                                       shape, 1);
                     be.binary_strided(BinaryOpKind::Div, t, at(quo), at(x), unit, at(z), unit,
                                       shape, 1);
                     be.gelu_forward(t, at(ge), at(x), n);
                     be.gelu_backward(t, at(dge), at(x), at(dout), n);
                     // f32 runs: through a bf16 buffer at the same misalignment and back.
                     char* mid = static_cast<char*>(b.alloc(len, DType::BF16)) + 2 * shift;
                     be.convert(DType::BF16, mid, t, at(x), n);
                     be.convert(t, at(cv), DType::BF16, mid, n);
                     return 0.0;
                   });
         }
       }
     }},
    {"adamw_tails", false,
     [](Harness& h) {
       for (const int shift : {0, 1, 4}) {
         const int64_t n = 1003, len = n + shift;
         const int p = h.inout(h.normal_(len)), g = h.in(h.normal_(len, 0.1f)),
                   m = h.inout(h.normal_(len, 0.05f)), v = h.inout(h.uniform_(len, 0.0f, 0.01f));
         h.check("adamw shift " + std::to_string(shift), [=](Backend& be, DType, const Buffers& b) {
           const auto at = [&](int k) { return static_cast<float*>(b[k]) + shift; };
           be.adamw_update(at(p), at(g), at(m), at(v), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 5);
           return 0.0;
         });
       }
     }},
    {"sum", true,
     [](Harness& h) {
       const int x = h.in(h.normal_(100003, 1.0f, 0.3f));
       h.check(
           "sum", [=](Backend& be, DType t, const Buffers& b) { return be.sum(t, b[x], 100003); },
           true);
       h.check(
           "sum_squares",
           [=](Backend& be, DType t, const Buffers& b) { return be.sum_squares(t, b[x], 100003); },
           true);
     }},
    {"sum_squares_multi", true,
     [](Harness& h) {
       const int a = h.in(h.normal_(1000)), c = h.in(h.normal_(3)), d = h.in(h.normal_(70001));
       h.check(
           "sum_squares_multi",
           [=](Backend& be, DType t, const Buffers& b) {
             const void* xs[3] = {b[a], b[c], b[d]};
             const int64_t ns[3] = {1000, 3, 70001};
             return be.sum_squares_multi(t, xs, ns, 3);
           },
           true);
     }},
    {"bias", true,
     [](Harness& h) {
       const int x = h.in(h.normal_(300 * 70)), bias = h.in(h.normal_(70)), o = h.out(300 * 70),
                 db = h.out(70), db1 = h.out(70);
       h.check("add_bias, bias_backward", [=](Backend& be, DType t, const Buffers& b) {
         be.add_bias(t, b[o], b[x], b[bias], 300, 70);
         be.bias_backward(t, b[db], b[x], 300, 70);
         be.bias_backward(t, b[db1], b[x], 5, 70);  // one chunk
         return 0.0;
       });
     }},
    {"gemm_batched", true,
     [](Harness& h) {
       const int64_t M = 33, N = 17, K = 45, pad = 3;
       for (int ta = 0; ta < 2; ++ta) {
         for (int tb = 0; tb < 2; ++tb) {
           for (int64_t batch : {int64_t{1}, int64_t{3}}) {
             for (double beta : {0.0, 0.5}) {
               const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
               const int64_t sa = (ta ? K : M) * lda + 5, sb = (tb ? N : K) * ldb + 7,
                             sc = M * ldc + 2;
               const int a = h.in(h.normal_(batch * sa)), bm = h.in(h.normal_(batch * sb));
               const int c = beta == 0.0 ? h.out(batch * sc) : h.inout(h.normal_(batch * sc));
               h.check("gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                           " batch=" + std::to_string(batch) + " beta=" + std::to_string(beta),
                       [=](Backend& be, DType t, const Buffers& b) {
                         be.gemm_batched(t, ta, tb, batch, M, N, K, 0.7, b[a], lda, sa, b[bm], ldb,
                                         sb, beta, b[c], ldc, sc);
                         return 0.0;
                       });
             }
           }
         }
       }
     }},
    {"linear", true,
     [](Harness& h) {
       // The bias (and GELU) fused into the matmul (cuBLASLt epilogues on CUDA) against gemm +
       // add_bias (+ gelu) and gemm + bias_backward on the CPU; shapes repeat so the second call
       // reuses a cached plan.
       for (const auto& shape : {std::tuple<int64_t, int64_t, int64_t>{37, 24, 16},
                                 {37, 24, 16},
                                 {64, 48, 32},
                                 {5, 3, 7}}) {
         const int64_t R = std::get<0>(shape), N = std::get<1>(shape), K = std::get<2>(shape);
         const int x = h.in(h.normal_(R * K)), w = h.in(h.normal_(N * K, 0.3f)),
                   bias = h.in(h.normal_(N)), dy = h.in(h.normal_(R * N));
         const int y = h.out(R * N), y0 = h.out(R * N), dw = h.out(N * K), db = h.out(N),
                   dw0 = h.out(N * K), act = h.out(R * N), pre = h.out(R * N);
         h.check("linear R=" + std::to_string(R) + " N=" + std::to_string(N) +
                     " K=" + std::to_string(K),
                 [=](Backend& be, DType t, const Buffers& b) {
                   be.linear_forward(t, b[y], b[x], b[w], b[bias], R, N, K);
                   be.linear_forward(t, b[y0], b[x], b[w], nullptr, R, N, K);
                   be.linear_weight_grad(t, b[dw], b[db], b[dy], b[x], R, N, K);
                   be.linear_weight_grad(t, b[dw0], nullptr, b[dy], b[x], R, N, K);
                   // GELU_AUX_BIAS on CUDA when N is a multiple of 8 (24, 48), else unfused.
                   be.linear_gelu_forward(t, b[act], b[pre], b[x], b[w], b[bias], R, N, K);
                   return 0.0;
                 });
       }
     }},
    {"embedding", true,
     [](Harness& h) {
       const int64_t N = 40, V = 11, C = 24;
       std::vector<int32_t> ids(N);
       std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(V) - 2);  // V-1 unused
       for (auto& v : ids) v = pick(h.rng);
       const int id = h.ints(ids), table = h.in(h.normal_(V * C)), dout = h.in(h.normal_(N * C));
       const int o = h.out(N * C), dt = h.out(V * C);
       h.check("embedding forward and backward", [=](Backend& be, DType t, const Buffers& b) {
         be.embedding_forward(t, b[o], b.ids(id), b[table], N, V, C, 0, V);
         be.embedding_backward(t, b[dt], b[dout], b.ids(id), N, V, C, 0, V, false);
         return 0.0;
       });
     }},
    {"embedding of a vocabulary-parallel shard (rows 4..8 of 11)", true,
     [](Harness& h) {
       const int64_t N = 40, vocab = 11, first = 4, V = 5, C = 24;
       std::vector<int32_t> ids(N);
       std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
       for (auto& v : ids) v = pick(h.rng);
       const int id = h.ints(ids), table = h.in(h.normal_(V * C)), dout = h.in(h.normal_(N * C));
       const int o = h.out(N * C), dt = h.out(V * C);
       h.check("shard embedding forward and backward", [=](Backend& be, DType t, const Buffers& b) {
         be.embedding_forward(t, b[o], b.ids(id), b[table], N, V, C, first, vocab);
         be.embedding_backward(t, b[dt], b[dout], b.ids(id), N, V, C, first, vocab, false);
         return 0.0;
       });
     }},
    {"layernorm", true,
     [](Harness& h) {
       for (int64_t C : {int64_t{48}, int64_t{777}}) {
         const int64_t N = 70;
         const int x = h.in(h.normal_(N * C, 2.0f, 0.5f)), w = h.in(h.normal_(C)),
                   bias = h.in(h.normal_(C)), dout = h.in(h.normal_(N * C)),
                   mean = h.in_stats(h.normal_(N, 0.3f)),
                   rstd = h.in_stats(h.uniform_(N, 0.5f, 2.0f));
         const int o = h.out(N * C), om = h.out_stats(N), ors = h.out_stats(N), dx = h.out(N * C),
                   dw = h.out(C), db = h.out(C);
         h.check("layernorm C=" + std::to_string(C), [=](Backend& be, DType t, const Buffers& b) {
           be.layernorm_forward(t, b[o], b[om], b[ors], b[x], b[w], b[bias], N, C, 1e-5);
           be.layernorm_backward(t, b[dx], b[dw], b[db], b[dout], b[x], b[w], b[mean], b[rstd], N,
                                 C);
           return 0.0;
         });
       }
     }},
    // Fused residual + layer norm: C 48 takes the 16-byte path (4 f32 / 8 bf16 per access), C 777
    // and buffers one element past an aligned start the element-wise fallback; backward with a
    // separate dresidual, with dresidual == dinp (in place) and with none. x and delta are
    // multiples of 1/8 below 12.5, so x + delta is exact in bf16 too and the f32 statistics of
    // the bf16 run can be held to 1e-4 against the CPU's f32 run.
    {"residual_layernorm", true,
     [](Harness& h) {
       const auto eighths = [](std::vector<float> v) {
         for (float& e : v) e = std::round(std::clamp(e, -12.0f, 12.0f) * 8.0f) / 8.0f;
         return v;
       };
       for (const auto& [C, shift] : {std::pair<int64_t, int>{48, 0}, {777, 0}, {48, 1}}) {
         const int64_t N = 70, n = N * C + shift;
         const int x = h.in(eighths(h.normal_(n, 2.0f, 0.5f))), delta = h.in(eighths(h.normal_(n))),
                   w = h.in(h.normal_(C + shift)), bias = h.in(h.normal_(C + shift)),
                   dout = h.in(h.normal_(n)), dres = h.in(h.normal_(n)),
                   mean = h.in_stats(h.normal_(N, 0.3f)),
                   rstd = h.in_stats(h.uniform_(N, 0.5f, 2.0f));
         const int res = h.out(n), o = h.out(n), om = h.out_stats(N), ors = h.out_stats(N),
                   dx = h.out(n), dx_inplace = h.inout(h.normal_(n)), dx_alone = h.out(n),
                   dw = h.out(C + shift), db = h.out(C + shift);
         h.check("residual_layernorm C=" + std::to_string(C) + " shift " + std::to_string(shift),
                 [=](Backend& be, DType t, const Buffers& b) {
                   const auto at = [&](int k) {
                     return static_cast<void*>(static_cast<char*>(b[k]) +
                                               shift * static_cast<int>(dtype_size(t)));
                   };
                   be.residual_layernorm_forward(t, at(res), at(o), b[om], b[ors], at(x), at(delta),
                                                 at(w), at(bias), N, C, 1e-5);
                   be.residual_layernorm_backward(t, at(dx), at(dw), at(db), at(dres), at(dout),
                                                  at(x), at(w), b[mean], b[rstd], N, C);
                   be.residual_layernorm_backward(t, at(dx_inplace), at(dw), at(db), at(dx_inplace),
                                                  at(dout), at(x), at(w), b[mean], b[rstd], N, C);
                   be.residual_layernorm_backward(t, at(dx_alone), at(dw), at(db), nullptr,
                                                  at(dout), at(x), at(w), b[mean], b[rstd], N, C);
                   return 0.0;
                 });
       }
     }},
    {"gelu", true,
     [](Harness& h) {
       const int64_t n = 10000;
       const int x = h.in(h.normal_(n, 3.0f)), dout = h.in(h.normal_(n)), o = h.out(n),
                 dx = h.out(n);
       h.check("gelu", [=](Backend& be, DType t, const Buffers& b) {
         be.gelu_forward(t, b[o], b[x], n);
         be.gelu_backward(t, b[dx], b[x], b[dout], n);
         return 0.0;
       });
     }},
    {"softmax", true,
     [](Harness& h) {
       for (int64_t cols : {int64_t{5}, int64_t{1000}}) {
         const int64_t rows = 7;
         const int x = h.in(h.normal_(rows * cols, 3.0f)), y = h.in(h.uniform_(rows * cols, 0, 1)),
                   dout = h.in(h.normal_(rows * cols)), o = h.out(rows * cols),
                   dx = h.out(rows * cols);
         h.check("softmax cols=" + std::to_string(cols),
                 [=](Backend& be, DType t, const Buffers& b) {
                   be.softmax_forward(t, b[o], b[x], rows, cols);
                   be.softmax_backward(t, b[dx], b[y], b[dout], rows, cols);
                   return 0.0;
                 });
       }
     }},
    {"attention", true,
     [](Harness& h) {
       struct Shape {
         int64_t B, T, C, NH;
       };
       // Head sizes 16, 64 and 96 (the 32-, 64- and 128-wide kernels); T across tile edges.
       for (const Shape s : {Shape{2, 37, 48, 3}, Shape{1, 64, 128, 2}, Shape{1, 33, 96, 1},
                             Shape{2, 1, 32, 2}, Shape{1, 100, 64, 4}}) {
         const int qkv = h.in(h.normal_(s.B * s.T * 3 * s.C)),
                   dout = h.in(h.normal_(s.B * s.T * s.C));
         const int o = h.out(s.B * s.T * s.C), dqkv = h.out(s.B * s.T * 3 * s.C);
         h.check("attention B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
                     " C=" + std::to_string(s.C) + " NH=" + std::to_string(s.NH),
                 [=](Backend& be, DType t, const Buffers& b) {
                   void* att = b.alloc(be.attention_saved_elements(t, s.B, s.T, s.C, s.NH), t);
                   be.attention_forward(t, b[o], att, b[qkv], s.B, s.T, s.C, s.NH);
                   be.attention_backward(t, b[dqkv], b[dout], b[qkv], b[o], att, s.B, s.T, s.C,
                                         s.NH);
                   return 0.0;
                 });
       }
     }},
    {"cross_entropy", true,
     [](Harness& h) {
       for (int64_t V : {int64_t{7}, int64_t{3000}}) {
         const int64_t N = 9;
         std::vector<int32_t> targets(N);
         std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(V) - 1);
         for (auto& v : targets) v = pick(h.rng);
         targets[2] = -1;  // ignored
         const int tg = h.ints(targets), x = h.in(h.normal_(N * V, 2.0f, 10.0f)),
                   dl = h.in_stats(h.normal_(N)), loss = h.out_stats(N), lse = h.out_stats(N),
                   dx = h.out(N * V), mean = h.out_stats(1), inv = h.out_stats(1);
         h.check("cross_entropy V=" + std::to_string(V),
                 [=](Backend& be, DType t, const Buffers& b) {
                   be.cross_entropy_forward(t, b[loss], b[lse], b[x], b.ids(tg), N, V);
                   be.cross_entropy_backward(t, b[dx], b[x], b[lse], b.ids(tg), b[dl], N, V, 0);
                   be.cross_entropy_mean(t, b[mean], b[inv], b[loss], b.ids(tg), N);
                   return 0.0;
                 });
       }
     }},
    {"cross_entropy_fused", true,
     [](Harness& h) {
       // Rows padded from `vocab` to V columns (V = vocab: no padding); the gradient written
       // over the logits (an InOut buffer), then loss only (the logits must stay), then the
       // backward's rescale by 1 (nothing touched) and by 0.5.
       for (auto [vocab, V] : {std::pair<int64_t, int64_t>{7, 7}, {3000, 3000}, {2990, 3072}}) {
         const int64_t N = 9;
         std::vector<int32_t> targets(N);
         std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
         for (auto& v : targets) v = pick(h.rng);
         targets[2] = -1;  // ignored
         const auto logits = h.normal_(N * V, 2.0f, 10.0f);
         const int tg = h.ints(targets), x = h.inout(logits), x0 = h.inout(logits),
                   loss = h.out_stats(N), loss0 = h.out_stats(N), dloss = h.out_stats(1),
                   y1 = h.inout(h.normal_(N * V)), y2 = h.inout(h.normal_(N * V)),
                   one = h.in_stats({1.0f}), half = h.in_stats({0.5f});
         h.check("cross_entropy_fused vocab=" + std::to_string(vocab) + " V=" + std::to_string(V),
                 [=](Backend& be, DType t, const Buffers& b) {
                   be.cross_entropy_fused(t, b[x], b[loss], b[dloss], b.ids(tg), N, V, vocab, 0.75);
                   be.cross_entropy_fused(t, b[x0], b[loss0], nullptr, b.ids(tg), N, V, vocab, 1.0);
                   be.cross_entropy_fused_rescale(t, b[y1], b[one], N * V);
                   be.cross_entropy_fused_rescale(t, b[y2], b[half], N * V);
                   return 0.0;
                 });
       }
     }},
    {"cross_entropy_shard", true,
     [](Harness& h) {
       // Three vocabulary slices of one (N, 3 Vl) row block, as three tensor-parallel ranks
       // hold them; targets in every slice, one ignored and one no slice holds (NaN loss).
       for (int64_t Vl : {int64_t{5}, int64_t{1000}}) {
         const int64_t N = 9;
         const int parts = 3;
         std::vector<int32_t> targets(N);
         std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(parts * Vl) - 1);
         for (auto& v : targets) v = pick(h.rng);
         targets[2] = -1;
         targets[4] = static_cast<int32_t>(parts * Vl);
         const int tg = h.ints(targets), dl = h.in_stats(h.normal_(N));
         int x[parts], dx[parts];
         for (int p = 0; p < parts; ++p) x[p] = h.in(h.normal_(N * Vl, 2.0f, 10.0f));
         for (int p = 0; p < parts; ++p) dx[p] = h.out(N * Vl);
         const int stats = h.out_stats(parts * N * 4), loss = h.out_stats(N), lse = h.out_stats(N);
         h.check("cross_entropy_shard Vl=" + std::to_string(Vl), [=](Backend& be, DType t,
                                                                     const Buffers& b) {
           for (int p = 0; p < parts; ++p) {
             be.cross_entropy_shard_stats(t, static_cast<float*>(b[stats]) + p * N * 4, b[x[p]],
                                          b.ids(tg), N, Vl, p * Vl);
           }
           be.cross_entropy_shard_combine(t, b[loss], b[lse], b[stats], b.ids(tg), N, parts);
           for (int p = 0; p < parts; ++p) {
             be.cross_entropy_backward(t, b[dx[p]], b[x[p]], b[lse], b.ids(tg), b[dl], N, Vl,
                                       p * Vl);
           }
           return 0.0;
         });
       }
     }},
    {"dropout", true,
     [](Harness& h) {
       const int64_t n = 20000;
       const uint64_t seed = h.rng();
       const int x = h.in(h.normal_(n)), dout = h.in(h.normal_(n)), o = h.out(n), mask = h.out(n),
                 dx = h.out(n), o0 = h.out(n), m0 = h.out(n);
       h.check("dropout", [=](Backend& be, DType t, const Buffers& b) {
         be.dropout_forward(t, b[o], b[mask], b[x], n, 0.3f, seed, 12345);
         be.dropout_backward(t, b[dx], b[dout], b[mask], n);
         be.dropout_forward(t, b[o0], b[m0], b[x], n, 0.0f, seed, 0);
         return 0.0;
       });
     }},
    // The Llama ops (tests/gpu/test_llama_ops.cpp checks them per element through autograd):
    // rstd is a statistic (f32 in bf16 runs); RoPE also in place, at a long position.
    {"rms_norm", true,
     [](Harness& h) {
       for (int64_t C : {int64_t{48}, int64_t{777}}) {
         const int64_t N = 70;
         const int x = h.in(h.normal_(N * C, 2.0f, 0.5f)), w = h.in(h.normal_(C)),
                   dout = h.in(h.normal_(N * C)), rstd = h.in_stats(h.uniform_(N, 0.5f, 2.0f));
         const int o = h.out(N * C), ors = h.out_stats(N), dx = h.out(N * C), dw = h.out(C);
         h.check("rms_norm C=" + std::to_string(C), [=](Backend& be, DType t, const Buffers& b) {
           be.rms_norm_forward(t, b[o], b[ors], b[x], b[w], N, C, 1e-5);
           be.rms_norm_backward(t, b[dx], b[dw], b[dout], b[x], b[w], b[rstd], N, C);
           return 0.0;
         });
       }
     }},
    {"rope", true,
     [](Harness& h) {
       const int64_t B = 2, T = 9, NH = 3, D = 64, n = B * T * NH * D;
       const int x = h.in(h.normal_(n)), o = h.out(n), back = h.out(n),
                 inplace = h.inout(h.normal_(n));
       h.check("rope forward, inverse, in place", [=](Backend& be, DType t, const Buffers& b) {
         be.rope_forward(t, b[o], b[x], B, T, NH, D, 500000.0, 0, false);
         be.rope_forward(t, b[back], b[x], B, T, NH, D, 10000.0, 3, true);
         be.rope_forward(t, b[inplace], b[inplace], B, T, NH, D, 10000.0, 8000, false);
         return 0.0;
       });
     }},
    {"swiglu", true,
     [](Harness& h) {
       const int64_t n = 3001;
       const int g = h.in(h.normal_(n, 5.0f)), u = h.in(h.normal_(n)), dout = h.in(h.normal_(n)),
                 o = h.out(n), dg = h.out(n), du = h.out(n);
       h.check("swiglu", [=](Backend& be, DType t, const Buffers& b) {
         be.swiglu_forward(t, b[o], b[g], b[u], n);
         be.swiglu_backward(t, b[dg], b[du], b[g], b[u], b[dout], n);
         return 0.0;
       });
     }},
    {"gqa_pack", true,
     [](Harness& h) {
       const int64_t N = 13, H = 6, Hkv = 2, D = 5;
       const int q = h.in(h.normal_(N * H * D)), k = h.in(h.normal_(N * Hkv * D)),
                 v = h.in(h.normal_(N * Hkv * D)), dqkv = h.in(h.normal_(N * 3 * H * D)),
                 qkv = h.out(N * 3 * H * D), dq = h.out(N * H * D), dk = h.out(N * Hkv * D),
                 dv = h.out(N * Hkv * D);
       h.check("gqa_pack", [=](Backend& be, DType t, const Buffers& b) {
         be.gqa_pack_forward(t, b[qkv], b[q], b[k], b[v], N, H, Hkv, D);
         be.gqa_pack_backward(t, b[dq], b[dk], b[dv], b[dqkv], N, H, Hkv, D);
         return 0.0;
       });
     }},
    {"adamw", false,
     [](Harness& h) {
       // adamw_update on one tensor; the other two (odd sizes, their own weight decays, the
       // gradients read times 0.37) in one multi-tensor update through a table.
       const int64_t sizes[3] = {1000, 3, 70001};
       const float decays[3] = {0.1f, 0.0f, 0.05f};
       int p[3], g[3], m[3], v[3];
       for (int k = 0; k < 3; ++k) {
         p[k] = h.inout(h.normal_(sizes[k]));
         g[k] = h.in(h.normal_(sizes[k], 0.1f));
         m[k] = h.inout(h.normal_(sizes[k], 0.05f));
         v[k] = h.inout(h.uniform_(sizes[k], 0.0f, 0.01f));
       }
       h.check("adamw_update and adamw_update_table", [=](Backend& be, DType, const Buffers& b) {
         be.adamw_update(static_cast<float*>(b[p[0]]), static_cast<const float*>(b[g[0]]),
                         static_cast<float*>(b[m[0]]), static_cast<float*>(b[v[0]]), sizes[0],
                         1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 5);
         OptimizerTensor ts[3];
         for (int k = 0; k < 3; ++k) {
           ts[k] = {static_cast<float*>(b[p[k]]),
                    static_cast<const float*>(b[g[k]]),
                    static_cast<float*>(b[m[k]]),
                    static_cast<float*>(b[v[k]]),
                    sizes[k],
                    decays[k],
                    false};
         }
         void* table = b.alloc(static_cast<int64_t>(be.optimizer_table_bytes(2)), DType::U8);
         const int64_t units = be.optimizer_table_write(table, ts + 1, 2);
         be.adamw_update_table(table, 2, units, 3e-3f, 0.8f, 0.99f, 1e-6f, 1, 0.37f);
         return 0.0;
       });
     }},
    {"sgd", false,
     [](Harness& h) {
       const int64_t sizes[3] = {1000, 3, 70001};
       int p[3], g[3], buf[3];
       for (int k = 0; k < 3; ++k) {
         p[k] = h.inout(h.normal_(sizes[k]));
         g[k] = h.in(h.normal_(sizes[k], 0.1f));
         buf[k] = h.inout(h.normal_(sizes[k], 0.1f));
       }
       h.check("sgd_update and sgd_update_table", [=](Backend& be, DType, const Buffers& b) {
         be.sgd_update(static_cast<float*>(b[p[0]]), static_cast<const float*>(b[g[0]]),
                       static_cast<float*>(b[buf[0]]), sizes[0], 0.05f, 0.9f, 0.0f, 0.01f, true,
                       false);
         OptimizerTensor ts[2];
         for (int k = 1; k < 3; ++k) {
           ts[k - 1] = {static_cast<float*>(b[p[k]]),
                        static_cast<const float*>(b[g[k]]),
                        static_cast<float*>(b[buf[k]]),
                        nullptr,
                        sizes[k],
                        0.01f * k,
                        k == 1};
         }
         void* table = b.alloc(static_cast<int64_t>(be.optimizer_table_bytes(2)), DType::U8);
         const int64_t units = be.optimizer_table_write(table, ts, 2);
         be.sgd_update_table(table, 2, units, 0.1f, 0.8f, 0.1f, false, 0.37f);
         return 0.0;
       });
     }},
};

}  // namespace

TEST_CASE("every Backend op on CUDA matches the CPU backend on seeded random inputs", "[ops]") {
  for (const OpCase& c : kCases) {
    for (DType t : {DType::F32, DType::BF16}) {
      if (t == DType::BF16 && !c.bf16) continue;
      const uint64_t seed = test_seed();
      INFO("op " << c.name << ", seed " << seed);
      Harness h(t, seed);
      c.body(h);
    }
  }
}

// The fused classifier against the two-pass kernels on the GPU itself, per element: losses and
// the in-place gradient of logits padded from 2990 columns against cross_entropy_forward and
// _backward over the unpadded 2990 (dloss = grad_scale / count); the padding columns and the
// ignored row's gradient exactly zero, and the padding's large logits add nothing to the loss.
// Three layouts of the logits: V = 3072 aligned (16-byte packs, a scalar tail of the 2990 in the
// online pass), the same one element past 16-byte alignment, and an odd V = 2997 (element by
// element for both).
TEST_CASE("fused classifier on CUDA equals the two-pass cross entropy per element", "[ops]") {
  struct Layout {
    int64_t V, offset;
  };
  for (const Layout lay : {Layout{3072, 0}, Layout{3072, 1}, Layout{2997, 0}}) {
    for (DType t : {DType::F32, DType::BF16}) {
      const uint64_t seed = test_seed();
      INFO(dtype_name(t) << ", V " << lay.V << ", offset " << lay.offset << ", seed " << seed);
      std::mt19937_64 rng(seed);
      const int64_t N = 9, vocab = 2990, V = lay.V, off = lay.offset;
      const double grad_scale = 0.75;
      std::vector<float> padded = normal(off + N * V, rng, 2.0f, 10.0f), plain(N * vocab);
      for (float& v : padded) v = round_bf16(v);  // the same values in f32 and bf16 runs
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < V; ++j) {
          float& x = padded[off + i * V + j];
          if (j >= vocab) x = 40.0f;  // would dominate the softmax if counted
          if (j < vocab) plain[i * vocab + j] = x;
        }
      }
      std::vector<int32_t> targets(N);
      std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
      for (auto& v : targets) v = pick(rng);
      targets[4] = -1;
      Backend& be = backend_for(gpu());
      const Tensor tg = upload_i32(targets), xp = upload(plain, t);
      const DType st = stats_dtype(t);
      Tensor x = upload(padded, t), losses = poisoned(N, st), dloss = poisoned(1, st),
             want_losses = poisoned(N, st), lse = poisoned(N, st), dx = poisoned(N * vocab, t);
      void* rows = static_cast<char*>(x.raw_data()) + off * static_cast<int64_t>(dtype_size(t));
      const Tensor dl = upload(std::vector<float>(N, static_cast<float>(grad_scale / (N - 1))), st);
      be.cross_entropy_fused(t, rows, losses.raw_data(), dloss.raw_data(), tg.data<int32_t>(), N, V,
                             vocab, grad_scale);
      be.cross_entropy_forward(t, want_losses.raw_data(), lse.raw_data(), xp.raw_data(),
                               tg.data<int32_t>(), N, vocab);
      be.cross_entropy_backward(t, dx.raw_data(), xp.raw_data(), lse.raw_data(), tg.data<int32_t>(),
                                dl.raw_data(), N, vocab, 0);
      const auto got_l = download(losses), want_l = download(want_losses), g = download(x),
                 want_g = download(dx);
      CHECK(download(dloss)[0] == static_cast<float>(grad_scale / (N - 1)));
      if (off > 0) CHECK(g[0] == padded[0]);  // the element before the rows untouched
      for (int64_t i = 0; i < N; ++i) {
        INFO("row " << i);
        CHECK(std::abs(got_l[i] - want_l[i]) <= 1e-5 * std::max(1.0f, std::abs(want_l[i])));
        int bad = 0;
        for (int64_t j = 0; j < V; ++j) {
          const float got = g[off + i * V + j];
          if (j >= vocab || targets[i] < 0) {
            bad += got != 0.0f;
            continue;
          }
          // f32: the two lse differ by rounding only; bf16: one rounding of nearly equal
          // values, at most one bf16 step apart.
          const float want = want_g[i * vocab + j];
          const float tol =
              t == DType::F32 ? 1e-5f * std::abs(want) + 1e-10f : std::abs(want) / 128.0f + 1e-12f;
          bad += std::abs(got - want) > tol;
        }
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("f32 <-> bf16 conversion on CUDA rounds to nearest even, as the host", "[ops]") {
  std::mt19937_64 rng(test_seed());
  std::vector<float> x = normal(4099, rng, 10.0f);
  x[0] = 1.0f + 1.0f / 256.0f;  // a tie: rounds to even (1.0)
  x[1] = -0.0f;
  const Tensor f = upload(x, DType::F32);
  Tensor b = Tensor::empty({4099}, DType::BF16, gpu());
  backend_for(gpu()).convert(DType::BF16, b.raw_data(), DType::F32, f.raw_data(), 4099);
  const std::vector<float> got = download(b);
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("element " << i << " = " << x[i]);
    REQUIRE(got[i] == round_bf16(x[i]));
  }
  Tensor back = Tensor::empty({4099}, DType::F32, gpu());
  backend_for(gpu()).convert(DType::F32, back.raw_data(), DType::BF16, b.raw_data(), 4099);
  CHECK(download(back) == got);
}

TEST_CASE("accumulate_converted on CUDA and the CPU is bitwise convert then add", "[ops]") {
  // A bf16 cast's backward adds its gradient into the f32 master's in one pass: every pair of
  // f32 and bf16, 16-byte aligned (vector kernel, 4099 elements: a scalar tail) and one element
  // off (scalar kernel), bit for bit what convert() into a temporary then axpy(1) give, on CUDA
  // and on the CPU.
  std::mt19937_64 rng(test_seed());
  const int64_t n = 4099;
  const auto bits = [](const Tensor& t) {
    const std::vector<float> v = download(t);
    std::vector<uint32_t> u(v.size());
    std::memcpy(u.data(), v.data(), v.size() * sizeof(float));
    return u;
  };
  using P = std::pair<DType, DType>;
  for (const auto& [dst_t, src_t] : {P{DType::F32, DType::BF16}, P{DType::BF16, DType::F32},
                                     P{DType::F32, DType::F32}, P{DType::BF16, DType::BF16}}) {
    for (const int64_t off : {int64_t{0}, int64_t{1}}) {
      INFO(dtype_name(src_t) << " into " << dtype_name(dst_t) << ", offset " << off);
      const std::vector<float> y0 = normal(n + 1, rng, 3.0f), x = normal(n + 1, rng, 0.01f);
      std::vector<std::vector<uint32_t>> results;
      for (const Device d : {gpu(), Device::cpu()}) {
        Backend& be = backend_for(d);
        const auto at = [off](const Tensor& t) {
          return static_cast<char*>(t.raw_data()) +
                 off * static_cast<int64_t>(dtype_size(t.dtype()));
        };
        const Tensor src = upload(x, src_t, d);
        Tensor fused = upload(y0, dst_t, d), two = upload(y0, dst_t, d);
        be.accumulate_converted(dst_t, at(fused), src_t, at(src), n);
        Tensor tmp = Tensor::empty({n + 1}, dst_t, d);
        be.convert(dst_t, at(tmp), src_t, at(src), n);
        be.axpy(dst_t, at(two), at(tmp), 1.0, n);
        const std::vector<uint32_t> f = bits(fused);
        CHECK(f == bits(two));
        CHECK(f[static_cast<size_t>(off == 0 ? n : 0)] ==
              bits(upload(y0, dst_t, d))[static_cast<size_t>(off == 0 ? n : 0)]);
        results.push_back(f);
      }
      CHECK(results[0] == results[1]);  // CUDA == CPU
    }
  }
}

TEST_CASE("dropout masks on CUDA equal the CPU's bit for bit", "[ops]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  const int64_t n = 100000;
  std::mt19937_64 rng(seed);
  const std::vector<float> x = normal(n, rng);
  Tensor out_g = poisoned(n, DType::F32), mask_g = poisoned(n, DType::F32);
  const Tensor x_g = upload(x, DType::F32);
  backend_for(gpu()).dropout_forward(DType::F32, out_g.raw_data(), mask_g.raw_data(),
                                     x_g.raw_data(), n, 0.1f, seed, 777);
  std::vector<float> out_c(n), mask_c(n);
  backend_for(Device::cpu())
      .dropout_forward(DType::F32, out_c.data(), mask_c.data(), x.data(), n, 0.1f, seed, 777);
  CHECK(download(mask_g) == mask_c);
  CHECK(download(out_g) == out_c);
}

TEST_CASE("the embedding backward accumulating into a gradient equals old + a fresh scatter",
          "[ops][embedding]") {
  // The trainer's tied token table already holds the LM head's gradient when the embedding's
  // backward runs: it adds its rows into it (no zeroed (V, C) table, no separate add), with the
  // bits of the separate add, f32 and bf16.
  std::mt19937_64 rng(test_seed());
  const int64_t N = 300, V = 37, C = 40;
  std::vector<int32_t> ids(N);
  std::uniform_int_distribution<int32_t> pick(0, V - 3);  // rows V-2, V-1 untouched
  for (auto& v : ids) v = pick(rng);
  const Tensor ids_g = upload_i32(ids);
  Backend& be = backend_for(gpu());
  for (const DType t : {DType::F32, DType::BF16}) {
    INFO(dtype_name(t));
    const Tensor dout = upload(normal(N * C, rng), t), old = upload(normal(V * C, rng), t);
    Tensor fresh = poisoned(V * C, t);
    be.embedding_backward(t, fresh.raw_data(), dout.raw_data(), ids_g.data<int32_t>(), N, V, C, 0,
                          V, false);
    const Tensor want = ops::add(old.clone(), fresh);
    Tensor acc = old.clone();
    be.embedding_backward(t, acc.raw_data(), dout.raw_data(), ids_g.data<int32_t>(), N, V, C, 0, V,
                          true);
    CHECK(acc.to(DType::F32).to_vector<float>() == want.to(DType::F32).to_vector<float>());
  }
}

TEST_CASE("reductions and sorted-scatter gradients are bitwise deterministic", "[ops]") {
  std::mt19937_64 rng(test_seed());
  const int64_t N = 4096, V = 50, C = 96;
  std::vector<int32_t> ids(N);
  std::uniform_int_distribution<int32_t> pick(0, V - 1);
  for (auto& v : ids) v = pick(rng);
  const Tensor ids_g = upload_i32(ids), dout = upload(normal(N * C, rng), DType::F32);
  Backend& be = backend_for(gpu());
  std::vector<float> first_table, first_bias;
  double first_sum = 0;
  for (int rep = 0; rep < 3; ++rep) {
    Tensor dt = poisoned(V * C, DType::F32), db = poisoned(C, DType::F32);
    be.embedding_backward(DType::F32, dt.raw_data(), dout.raw_data(), ids_g.data<int32_t>(), N, V,
                          C, 0, V, false);
    be.bias_backward(DType::F32, db.raw_data(), dout.raw_data(), N, C);
    const double s = be.sum_squares(DType::F32, dout.raw_data(), N * C);
    if (rep == 0) {
      first_table = download(dt);
      first_bias = download(db);
      first_sum = s;
    } else {
      CHECK(download(dt) == first_table);
      CHECK(download(db) == first_bias);
      CHECK(s == first_sum);
    }
  }
}

}  // namespace trident::gpu_test
