// Controls of Trident's CUDA emulation for tests (only in TRIDENT_CUDA_EMULATION builds).
// Environment variables set the same things for a whole process:
//   TRIDENT_CUDA_EMU_ORDER=forward|reverse|shuffle  thread order between sync points (shuffle)
//   TRIDENT_CUDA_EMU_SEED=N                        seed of the shuffled orders (1)
//   TRIDENT_CUDA_EMU_JITTER_US=N                   random delay before each stream op (50)
//   TRIDENT_CUDA_EMU_DEVICES=N                     visible devices (8; 0 = no device)
//   TRIDENT_CUDA_EMU_GPU=h100|h200|a100            the emulated model (h100)
//   TRIDENT_CUDA_EMU_MEMORY_MB=N                   memory per device (the model's)
//   TRIDENT_CUDA_EMU_LAUNCH_LOG=FILE               at exit, launch_counts() as "COUNT<tab>NAME"
//                                                  lines ("%p" in FILE: the pid, "%r": the rank)
#pragma once
#include <map>
#include <string>

namespace cuemu {

enum class ThreadOrder { Forward, Reverse, Shuffle };
void set_thread_order(ThreadOrder order, unsigned seed = 1);
ThreadOrder thread_order();
// The message of the most recent device fault (kernel error, bad library call), or "".
std::string last_fault_message();
// Clears a device's sticky error after a test provoked one on purpose (like cudaDeviceReset
// without freeing memory).
void clear_fault(int device);
// Number of kernel launches executed so far (all devices), for tests that count work.
long long launches_executed();
// Host synchronisations so far (all threads and devices): every call that makes the host wait
// for queued device work (cudaDeviceSynchronize, cudaStreamSynchronize, cudaEventSynchronize, a
// synchronous cudaMemcpy or cudaMemset, a copy into pageable host memory, cudaFree), counted
// when it waits, whether or not the work was already done (a real GPU would stall).
long long host_syncs();
// cudaMalloc calls so far (all devices): a training step should make none.
long long device_mallocs();
// Stream operations run so far per name (all devices): kernels by their launch name (as written
// in TRIDENT_LAUNCH), "cublasLtMatmul", "cudaMemsetAsync", "cudaMemcpyAsync", ..., NCCL calls by
// theirs; counted when the op has run (synchronise first), a graph's nodes at each replay. Event
// records and stream waits are not counted.
std::map<std::string, long long> launch_counts();
void reset_launch_counts();

}  // namespace cuemu
