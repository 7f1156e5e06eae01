// Internal interface of Trident's CUDA emulation between the runtime (streams, memory, faults)
// and the library shims (cuBLASLt, CUB, NCCL). Not installed, not used outside kernels/cuda/emu.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>

namespace cuemu {

// The device current on the calling host thread (cudaSetDevice).
int current_device();

// Queues `op` on `stream` (0 = the legacy default stream of the current device): it runs on the
// stream's worker thread after everything queued before it on that stream (and, for the legacy
// stream or blocking streams, after what the legacy-stream rules require). `what` names the
// operation in fault messages. An op that detects a device-side error calls fault() and
// returns. Returns the sticky error of the stream's device if there is one (nothing is queued
// then), cudaErrorInvalidResourceHandle for a destroyed stream, else cudaSuccess.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> op, const char* what);

// Like enqueue, for an op that takes its place in an order when it is issued (NCCL's tickets per
// communicator): `make` builds the op at issue. On a capturing stream `make` itself is recorded,
// and every cudaGraphLaunch calls it again, so each replay issues a fresh op in launch order.
cudaError_t enqueue_replayable(cudaStream_t stream, std::function<std::function<void()>()> make,
                               const char* what);

// cudaErrorStreamCaptureUnjoined (904; not in the emulated cuda_runtime_api.h): the capture
// ended while a stream that joined it had work nothing in the capture waited for.
constexpr cudaError_t kCaptureUnjoined = static_cast<cudaError_t>(904);
// cudaErrorCapturedEvent (907; not in the emulated header): a query, synchronisation or timing
// of an event whose latest record is a node of a capture still in progress.
constexpr cudaError_t kCapturedEvent = static_cast<cudaError_t>(907);

// The device a stream belongs to (-1 for an unknown handle).
int stream_device(cudaStream_t stream);

// Records a device fault (sticky, as on a GPU: every later runtime call on that device returns
// `error`), prints `message` once to stderr with "[cuda-emu]" in front, and makes the rest of the
// device's queued work a no-op.
void fault(int device, cudaError_t error, const std::string& message);

// Sets the calling thread's last error (what cudaGetLastError returns) and returns `error`.
cudaError_t set_last_error(cudaError_t error);

// Device memory: true when [ptr, ptr + bytes) lies inside one live cudaMalloc allocation;
// `device` receives its device. bytes == 0 checks ptr alone.
bool is_device_range(const void* ptr, size_t bytes, int* device = nullptr);
// Host memory allocated with cudaMallocHost / cudaHostAlloc (pinned).
bool is_pinned_host(const void* ptr);

// Sleeps a random 0..TRIDENT_CUDA_EMU_JITTER_US microseconds (default 50), on stream workers
// before each queued op, so that missing stream ordering shows up as wrong results.
void jitter();

}  // namespace cuemu

namespace cuemu {
// cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, n): n, else 0.
int func_max_dynamic_smem(const void* func);
// The emulated device's properties (index checked by the caller).
const cudaDeviceProp& device_props(int device);
// Prints one line to stderr prefixed with "[cuda-emu] ".
void report(const std::string& message);

// Warp-collective library calls (nvcuda::wmma in wmma.cpp), from inside a kernel. Waits like
// __syncwarp(0xffffffff) until every lane of the calling warp is at the same call (same source
// line); a lane that never gets there is a deadlock reported under `name`, and lanes that pass
// different arguments (pointer, leading dimension, layout: -1 for none) fault the launch.
void warp_collective(const char* name, const void* ptr, unsigned ldm, int layout, const char* file,
                     int line);
// The calling warp's scratch area, at least `bytes` large, zeroed when its block starts. Growing
// it moves it, so every user asks for the same size, kWarpScratchBytes: wmma.cpp uses it from
// offset 0, mma_sync.cpp (PTX mma.sync / ldmatrix) from kWarpScratchMmaSyncOffset.
constexpr size_t kWarpScratchBytes = 16384;
constexpr size_t kWarpScratchMmaSyncOffset = 8192;
void* warp_scratch(size_t bytes);
// True when [ptr, ptr + bytes) lies inside one shared-memory variable (static or dynamic) of the
// calling thread's block.
bool is_shared_range(const void* ptr, size_t bytes);
// The calling thread's linear index in its block (its warp is index / 32).
int thread_rank();
// The running launch's seed: from TRIDENT_CUDA_EMU_SEED and the number of launches queued
// before it, so launches queued back to back differ.
unsigned launch_seed();
}  // namespace cuemu
