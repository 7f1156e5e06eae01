#include "cuda_graph_step.hpp"

#include "trident/core/error.hpp"
#include "trident/train/trainer.hpp"

#ifdef TRIDENT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "trident/core/allocator.hpp"
#include "trident/core/cuda.hpp"
#include "trident/core/cuda_allocator.hpp"
#endif

namespace trident::train {

// Each refusal is something that needs the host in the middle of a step.
void check_cuda_graphs_supported(Device device, const ParallelLayout& layout, int world_size,
                                 bool nccl, bool zero, bool trace) {
  TRIDENT_CHECK(device.is_cuda(), "--cuda-graphs needs --device cuda (", device.str(),
                " has no graphs)");
  TRIDENT_CHECK(layout.pp == 1, "--cuda-graphs does not support --pp ", layout.pp,
                ": pipeline stages exchange activations through host-driven send/recv");
  TRIDENT_CHECK(world_size == 1 || nccl, "--cuda-graphs needs NCCL collectives over ", world_size,
                " ranks (dp ", layout.dp, ", tp ", layout.tp,
                "; --comm nccl, the default on GPUs): MPI's collectives on device memory wait for "
                "the device and stage through the host, which a graph cannot capture");
  TRIDENT_CHECK(!zero,
                "--cuda-graphs does not support --zero 1 (ZeroAdamW's update takes the learning "
                "rate, step count and clip factor from the host, and the norm of its shards is "
                "reduced with host MPI)");
  TRIDENT_CHECK(!trace,
                "--cuda-graphs does not support --trace (its device spans time each "
                "step's kernels from the host)");
}

#ifdef TRIDENT_WITH_CUDA

namespace {
void check(cudaError_t e, const char* what) {
  TRIDENT_CHECK(e == cudaSuccess, "--cuda-graphs: ", what, " failed: ", cudaGetErrorName(e), " (",
                cudaGetErrorString(e), ")");
}
}  // namespace

struct CudaGraphStep::Impl {
  CudaAllocator* allocator = nullptr;
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Impl() {
    if (exec != nullptr) (void)cudaGraphExecDestroy(exec);
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    if (allocator != nullptr) {
      allocator->end_private_pool();
      allocator->release_private_pool();
    }
  }
};

CudaGraphStep::CudaGraphStep(Device device) : impl_(std::make_unique<Impl>()) {
  TRIDENT_CHECK(device.is_cuda(), "--cuda-graphs needs a CUDA device, not ", device.str());
  impl_->allocator = dynamic_cast<CudaAllocator*>(&allocator_for(device));
  TRIDENT_CHECK(impl_->allocator != nullptr, "--cuda-graphs: ", device.str(),
                " has no caching allocator with a private pool");
  impl_->stream = static_cast<cudaStream_t>(cuda_compute_stream(device.index));
}

CudaGraphStep::~CudaGraphStep() = default;

bool CudaGraphStep::run(const std::function<void()>& queue_step) {
  Impl& g = *impl_;
  if (warmups_ < kWarmupSteps) {
    g.allocator->begin_private_pool();
    try {
      queue_step();
    } catch (...) {
      g.allocator->end_private_pool();
      throw;
    }
    g.allocator->end_private_pool();
    ++warmups_;
    return true;
  }
  const bool capturing = captures_ == 0;
  if (capturing) {
    g.allocator->begin_private_pool();
    // Thread-local mode: only this thread's calls are checked. Over several ranks the NCCL
    // communicators' watchdogs and the reducer's timing thread go on querying the events of the
    // eager steps' collectives (never the captured ones), which global mode would count against
    // the capture although nothing of theirs is in it.
    check(cudaStreamBeginCapture(g.stream, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
    try {
      queue_step();
    } catch (...) {
      cudaGraph_t dropped = nullptr;
      if (cudaStreamEndCapture(g.stream, &dropped) == cudaSuccess && dropped != nullptr)
        (void)cudaGraphDestroy(dropped);
      (void)cudaGetLastError();
      g.allocator->end_private_pool();
      throw;
    }
    const cudaError_t e = cudaStreamEndCapture(g.stream, &g.graph);
    g.allocator->end_private_pool();
    check(e,
          "capturing the step (something in it waited for the device or allocated memory; "
          "run without --cuda-graphs) cudaStreamEndCapture");
    check(cudaGraphInstantiate(&g.exec, g.graph, 0), "cudaGraphInstantiate");
    ++captures_;
  }
  check(cudaGraphLaunch(g.exec, g.stream), "cudaGraphLaunch");
  ++launches_;
  return capturing;
}

#else  // no CUDA in this build

struct CudaGraphStep::Impl {};

CudaGraphStep::CudaGraphStep(Device device) {
  throw Error(str_cat("--cuda-graphs needs a CUDA build of Trident (", device.str(), ")"));
}
CudaGraphStep::~CudaGraphStep() = default;
bool CudaGraphStep::run(const std::function<void()>&) {
  return false;
}

#endif

}  // namespace trident::train
