// A user's program built against an installed Trident (find_package(Trident), see
// CMakeLists.txt here): its own model, a two-layer MLP written with Trident's C++ API, trained
// data-parallel over MPI on a synthetic regression task.
//
// Task. x (8) uniform in [-1, 1); the target y (2) is a fixed smooth function of x:
//   y0 = sin(2 x0) + x1 x2,   y1 = x3^2 - x4 / 2.
// Every data-parallel rank draws its own rows of each global batch (rows are a pure function of
// the step and the row's index, so the global batch is the same for any number of ranks).
//
// Model. h = GELU(x W1^T + b1) (hidden 64), y_hat = h W2^T + b2; loss = mean((y_hat - y)^2).
// Data parallelism. DataParallelReducer broadcasts rank 0's initial weights, then averages the
// gradients over the ranks while backward runs; every rank steps its own AdamW, so the replicas
// stay identical. At the end each rank prints a checksum of its weights and rank 0 checks that
// every replica has the same weights.
//
//   mpirun -np 2 ./trident_dp_mlp [--steps N] [--lr LR] [--batch GLOBAL_BATCH]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "trident/core/error.hpp"
#include "trident/core/nn/layers.hpp"
#include "trident/core/nn/module.hpp"
#include "trident/core/ops.hpp"
#include "trident/core/optim/optimizer.hpp"
#include "trident/core/rng.hpp"
#include "trident/parallel/data_parallel.hpp"
#include "trident/parallel/mpi_communicator.hpp"
#include "trident/parallel/mpi_runtime.hpp"

namespace {

using trident::Tensor;
using trident::nn::Linear;

constexpr int64_t kIn = 8, kHidden = 64, kOut = 2;

// The user's model: a plain Module subclass registering its two layers by name, so its
// parameters are "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias".
class TwoLayerMLP : public trident::nn::Module {
 public:
  TwoLayerMLP(int64_t in, int64_t hidden, int64_t out, trident::Generator& gen) {
    trident::nn::InitOptions init;
    init.std = 1.0 / std::sqrt(static_cast<double>(in));
    fc1 = register_module("fc1", std::make_shared<Linear>(in, hidden, true, gen, init));
    init.std = 1.0 / std::sqrt(static_cast<double>(hidden));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden, out, true, gen, init));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(trident::ops::gelu(fc1->forward(x))); }

  std::shared_ptr<Linear> fc1, fc2;
};

struct Args {
  int64_t steps = 300;
  int64_t global_batch = 64;
  float lr = 1e-2f;
  uint64_t seed = 7;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    TRIDENT_CHECK(i + 1 < argc, flag, " needs a value (usage: --steps N --lr LR --batch B)");
    const char* v = argv[++i];
    if (flag == "--steps")
      a.steps = std::atoll(v);
    else if (flag == "--batch")
      a.global_batch = std::atoll(v);
    else if (flag == "--lr")
      a.lr = static_cast<float>(std::atof(v));
    else
      TRIDENT_CHECK(false, "unknown flag ", flag, " (known: --steps, --batch, --lr)");
  }
  TRIDENT_CHECK(a.steps > 0 && a.global_batch > 0 && a.lr > 0,
                "--steps, --batch and --lr must be positive");
  return a;
}

// This rank's rows of global batch `step`: rows [rank * b, (rank + 1) * b) with b = B / world.
std::pair<Tensor, Tensor> batch(const Args& a, int64_t step, int rank, int world) {
  const int64_t rows = a.global_batch / world;
  const int64_t first_row = step * a.global_batch + rank * rows;
  Tensor x = Tensor::empty({rows, kIn});
  trident::Generator gen;
  gen.set_state(a.seed, static_cast<uint64_t>(first_row * kIn));
  gen.uniform_(x, -1.0, 1.0);
  const std::vector<float> xs = x.to_vector<float>();
  std::vector<float> ys(static_cast<size_t>(rows * kOut));
  for (int64_t r = 0; r < rows; ++r) {
    const float* v = &xs[static_cast<size_t>(r * kIn)];
    ys[static_cast<size_t>(r * kOut)] = std::sin(2 * v[0]) + v[1] * v[2];
    ys[static_cast<size_t>(r * kOut + 1)] = v[3] * v[3] - 0.5f * v[4];
  }
  return {x, Tensor::from_vector(ys, {rows, kOut})};
}

// Sum of |w| times a position weight over every parameter: equal on two ranks only when
// their weights are (up to float rounding of the sum itself, which is the same on both).
double weight_checksum(const trident::nn::Module& m) {
  double sum = 0;
  int64_t k = 0;
  for (const auto& [name, p] : m.named_parameters())
    for (float v : p.to_vector<float>()) sum += std::fabs(v) * static_cast<double>(1 + (k++ % 7));
  return sum;
}

int train(const Args& a) {
  auto world = trident::MpiCommunicator::world();
  const int rank = world->rank(), size = world->size();
  TRIDENT_CHECK(a.global_batch % size == 0, "--batch ", a.global_batch, " is not divisible by the ",
                size, " ranks");

  trident::Generator init_gen(a.seed);
  TwoLayerMLP model(kIn, kHidden, kOut, init_gen);
  // Collective: broadcasts rank 0's weights, so replicas start equal whatever their seeds.
  trident::DataParallelReducer reducer(model.named_parameters(), *world);
  trident::optim::AdamW opt({{model.parameters(), 0.0f}}, {a.lr, 0.9f, 0.99f, 1e-8f});

  if (rank == 0)
    std::printf(
        "trident_dp_mlp: %lld parameters, %d data-parallel ranks, global batch %lld, "
        "%lld steps\n",
        static_cast<long long>(model.num_parameters()), size,
        static_cast<long long>(a.global_batch), static_cast<long long>(a.steps));
  for (int64_t step = 0; step < a.steps; ++step) {
    auto [x, y] = batch(a, step, rank, size);
    opt.zero_grad();
    const Tensor diff = model.forward(x) - y;
    Tensor loss = trident::ops::mean(diff * diff);
    reducer.prepare(/*last_micro_batch=*/true);
    loss.backward();
    reducer.finish();  // gradients averaged over the ranks
    opt.step();
    double l = loss.item();
    world->all_reduce(&l, 1, trident::DType::F64, trident::ReduceOp::Avg);
    if (rank == 0 && (step == 0 || (step + 1) % 50 == 0 || step + 1 == a.steps))
      std::printf("step %4lld | loss %.6f\n", static_cast<long long>(step + 1), l);
  }

  const double mine = weight_checksum(model);
  double lo = mine, hi = mine;
  world->all_reduce(&lo, 1, trident::DType::F64, trident::ReduceOp::Min);
  world->all_reduce(&hi, 1, trident::DType::F64, trident::ReduceOp::Max);
  std::printf("rank %d: weight checksum %.9g\n", rank, mine);
  std::fflush(stdout);
  world->barrier();
  if (rank == 0) std::printf("replicas %s\n", lo == hi ? "agree" : "DIFFER");
  return lo == hi ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  trident::MpiRuntime mpi(&argc, &argv);
  return trident::run_guarded([&] { return train(parse_args(argc, argv)); });
}
