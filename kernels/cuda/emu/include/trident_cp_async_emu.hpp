// Trident's CUDA emulation of the PTX asynchronous copies that kernels/cuda/cp_async.cuh wraps in
// inline asm on a GPU (sm_80+):
//   cp.async.cg.shared.global [dst], [src], 16   (also .ca with 4 or 8 bytes)
//   cp.async.commit_group
//   cp.async.wait_group N
// A copy reads its source when it is issued and writes its shared-memory destination only when
// the issuing thread waits for its group: until cp.async.wait_group lets it complete, the
// destination keeps its old bytes (dynamic shared memory starts NaN-filled), so a kernel that
// reads a tile before waiting, or before the __syncthreads after the wait, reads stale data
// in the emulation as it may on a GPU. Copies not yet committed are never completed by a wait
// (as PTX says). Faults: a size other than 4, 8 or 16 bytes, a source or destination not
// aligned to it, a destination outside the block's shared memory.
#pragma once

namespace cuemu::ptx {

void cp_async(void* dst_shared, const void* src_global, unsigned bytes, const char* file, int line);
void cp_async_commit(const char* file, int line);
// Completes every committed group but the newest `pending` ones.
void cp_async_wait(int pending, const char* file, int line);

}  // namespace cuemu::ptx
