// Trident's CUDA emulation: kernel launches. A launch is checked against the device's limits
// when it is made (errors through cudaGetLastError, as on a GPU) and queued on its stream. The
// stream's worker runs the grid one block at a time; a block's threads are fibers (Boost.Context)
// that run until they reach __syncthreads, a warp-level call or their end. When every thread is
// waiting, the scheduler completes the warp calls whose lanes have all arrived, then the block
// barrier when all threads are at the same one; anything else (a barrier or shuffle some of its
// threads never reach, threads at different barriers) is a deadlock and faults the launch with a
// message naming the kernel, block, threads and source lines. Between two sync points threads
// run in forward, reversed or shuffled order (TRIDENT_CUDA_EMU_ORDER). Shared memory is
// allocated per block, separately for each variable (so AddressSanitizer bounds it), NaN-filled.
// Library calls that are warp-collective on a GPU (wmma) are warp calls here too, named in the
// messages, with their arguments checked to be the same in every lane.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "emu_runtime.hpp"
#include "trident_cp_async_emu.hpp"
#include "trident_cuda_emu.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define TRIDENT_EMU_ASAN 1
#endif

namespace ctx = boost::context::detail;

namespace cuemu {
namespace {

constexpr size_t kStackBytes =
#if defined(TRIDENT_EMU_ASAN)
    512 * 1024;
#else
    128 * 1024;
#endif

std::atomic<int> g_order{-1};  // ThreadOrder, -1 = not read from the environment yet
std::atomic<unsigned> g_seed{1};
std::atomic<long long> g_launches{0};
std::atomic<unsigned> g_submitted{0};  // launches queued: numbers each launch's fragment layouts

ThreadOrder order_now() {
  int o = g_order.load();
  if (o < 0) {
    const char* e = std::getenv("TRIDENT_CUDA_EMU_ORDER");
    const std::string v = e != nullptr ? e : "shuffle";
    o = static_cast<int>(v == "forward"   ? ThreadOrder::Forward
                         : v == "reverse" ? ThreadOrder::Reverse
                                          : ThreadOrder::Shuffle);
    const char* s = std::getenv("TRIDENT_CUDA_EMU_SEED");
    if (s != nullptr) g_seed.store(static_cast<unsigned>(std::strtoul(s, nullptr, 10)));
    int expected = -1;
    g_order.compare_exchange_strong(expected, o);
    o = g_order.load();
  }
  return static_cast<ThreadOrder>(o);
}

// A fiber stack with a PROT_NONE guard page below it.
struct Stack {
  void* base = nullptr;
  size_t bytes = 0;
  char* top() const { return static_cast<char*>(base) + bytes; }
  char* bottom() const { return static_cast<char*>(base) + page(); }
  size_t usable() const { return bytes - page(); }
  static size_t page() {
    static const size_t bytes = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return bytes;
  }
};

struct StackPool {
  std::deque<Stack> stacks;  // references stay valid as it grows
  ~StackPool() {
    for (Stack& s : stacks) munmap(s.base, s.bytes);
  }
  Stack& get(size_t i) {
    while (stacks.size() <= i) {
      Stack s;
      s.bytes = kStackBytes + Stack::page();
      s.base = mmap(nullptr, s.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (s.base == MAP_FAILED) {
        std::fprintf(stderr, "[cuda-emu] cannot map a fiber stack\n");
        std::abort();
      }
      mprotect(s.base, Stack::page(), PROT_NONE);
      stacks.push_back(s);
    }
    return stacks[i];
  }
};

enum class State : uint8_t { Runnable, Barrier, Warp, Done };

struct Block;

struct Lane {
  ThreadContext tc{};
  Block* block = nullptr;
  Stack* stack = nullptr;
  ctx::fcontext_t fiber = nullptr;
  int index = 0;  // linear thread index in the block
  State state = State::Runnable;
  const char* file = nullptr;
  int line = 0;
  WarpOp op = WarpOp::Shfl;
  bool syncwarp = false;
  const char* collective = nullptr;  // a library's warp-collective call (wmma), by name
  int layout = -1;                   // the collective's layout argument (-1: none)
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
  // cp.async copies issued and not yet completed (group 0 while not committed), and the number
  // of groups this thread has committed.
  struct AsyncCopy {
    void* dst;
    unsigned char bytes[16];
    unsigned size;
    int64_t group;
  };
  std::vector<AsyncCopy> async_copies;
  int64_t async_groups = 0;
#if defined(TRIDENT_EMU_ASAN)
  void* fake_stack = nullptr;
#endif
};

struct SharedVar {
  const char* file;
  int line;
  size_t bytes;
  void* ptr;
};

struct Block {
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  std::vector<Lane> lanes;
  ctx::fcontext_t scheduler = nullptr;
  void* dynamic = nullptr;
  size_t dynamic_bytes = 0;
  size_t static_bytes = 0;
  size_t shared_limit = 0;
  std::vector<SharedVar> statics;
  std::vector<std::vector<unsigned char>> warp_scratch;  // per warp, zeroed, for warp collectives
  unsigned launch_seed = 0;                              // LaunchCall::launch_seed
  std::string error;
#if defined(TRIDENT_EMU_ASAN)
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};

// Read at every threadIdx/blockIdx: the initial-exec model avoids a __tls_get_addr call each time.
__attribute__((tls_model("initial-exec"))) thread_local Lane* tls_lane = nullptr;
thread_local StackPool tls_stacks;

Lane& current_lane(const char* what) {
  if (tls_lane == nullptr) {
    std::fprintf(stderr, "[cuda-emu] %s used outside a kernel\n", what);
    std::abort();
  }
  return *tls_lane;
}

std::string where(const char* file, int line) {
  const char* slash = file != nullptr ? std::strrchr(file, '/') : nullptr;
  return std::string(slash != nullptr ? slash + 1 : (file != nullptr ? file : "?")) + ":" +
         std::to_string(line);
}

std::string dim_str(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

std::string thread_str(const Lane& l) {
  return "thread " + dim_str(l.tc.thread_idx.x, l.tc.thread_idx.y, l.tc.thread_idx.z) + " (warp " +
         std::to_string(l.index / 32) + " lane " + std::to_string(l.index % 32) + ")";
}

const char* op_name(const Lane& l) {
  if (l.collective != nullptr) return l.collective;
  if (l.syncwarp) return "__syncwarp";
  switch (l.op) {
    case WarpOp::Shfl:
      return "__shfl_sync";
    case WarpOp::ShflXor:
      return "__shfl_xor_sync";
    case WarpOp::ShflUp:
      return "__shfl_up_sync";
    case WarpOp::ShflDown:
      return "__shfl_down_sync";
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::Any:
      return "__any_sync";
  }
  return "warp op";
}

std::string collective_args_str(const Lane& l) {
  char ptr[32];
  std::snprintf(ptr, sizeof ptr, "%#llx", static_cast<unsigned long long>(l.value));
  std::string s = std::string("(pointer ") + ptr + ", ldm " + std::to_string(l.arg);
  if (l.layout >= 0) s += l.layout == 0 ? ", mem_row_major" : ", mem_col_major";
  return s + ")";
}

std::string state_str(const Lane& l) {
  switch (l.state) {
    case State::Runnable:
      return "running";
    case State::Done:
      return "has exited";
    case State::Barrier:
      return "waits at __syncthreads " + where(l.file, l.line);
    case State::Warp: {
      char mask[16];
      std::snprintf(mask, sizeof mask, "0x%08x", l.mask);
      return std::string("waits at ") + op_name(l) + " " + where(l.file, l.line) + " (mask " +
             mask + ")";
    }
  }
  return "?";
}

// Switches from the calling lane back to the block's scheduler; returns when resumed.
void yield_to_scheduler(Lane& l, bool finished) {
  Block& b = *l.block;
#if defined(TRIDENT_EMU_ASAN)
  __sanitizer_start_switch_fiber(finished ? nullptr : &l.fake_stack, b.scheduler_stack_bottom,
                                 b.scheduler_stack_size);
#endif
  ctx::transfer_t t = ctx::jump_fcontext(b.scheduler, &l);
  // Resumed by the scheduler.
  b.scheduler = t.fctx;
  (void)finished;
#if defined(TRIDENT_EMU_ASAN)
  __sanitizer_finish_switch_fiber(l.fake_stack, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
  tls_lane = &l;
}

void lane_entry(ctx::transfer_t t) {
  Lane& l = *static_cast<Lane*>(t.data);
  Block& b = *l.block;
  b.scheduler = t.fctx;
#if defined(TRIDENT_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
  tls_lane = &l;
  try {
    b.body(b.arg);
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = thread_str(l) + " threw: " + e.what();
  } catch (...) {
    if (b.error.empty()) b.error = thread_str(l) + " threw an exception";
  }
  l.state = State::Done;
  yield_to_scheduler(l, true);
  std::abort();  // a finished fiber is never resumed
}

void resume([[maybe_unused]] Block& b, Lane& l) {
#if defined(TRIDENT_EMU_ASAN)
  __sanitizer_start_switch_fiber(&b.scheduler_fake_stack, l.stack->bottom(), l.stack->usable());
#endif
  tls_lane = &l;
  ctx::transfer_t t = ctx::jump_fcontext(l.fiber, &l);
  l.fiber = t.fctx;
  tls_lane = nullptr;
#if defined(TRIDENT_EMU_ASAN)
  __sanitizer_finish_switch_fiber(b.scheduler_fake_stack, nullptr, nullptr);
#endif
}

// A small, fast generator for the per-pass thread orders.
struct XorShift {
  uint64_t s;
  explicit XorShift(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 16);
  }
};

// Completes every warp call whose lanes have all arrived, appending them to `runnable`.
void resolve_warps(Block& b, const std::vector<uint32_t>& waiting, std::vector<int>& runnable) {
  const int n = static_cast<int>(b.lanes.size());
  for (size_t w = 0; w < waiting.size(); ++w) {
    uint32_t pending = waiting[w];
    const int w0 = static_cast<int>(w) * 32;
    while (pending != 0) {
      const int first = __builtin_ctz(pending);
      Lane& l = b.lanes[w0 + first];
      const unsigned m = l.mask;
      pending &= ~(1u << first);
      // Ready when every lane in the mask waits at this same call with the same mask.
      bool ready = (m & ~waiting[w]) == 0 && w0 + 32 - __builtin_clz(m | 1u) <= n;
      for (uint32_t bits = m; ready && bits != 0; bits &= bits - 1) {
        const Lane& o = b.lanes[w0 + __builtin_ctz(bits)];
        ready = o.state == State::Warp && o.mask == m && o.syncwarp == l.syncwarp && o.op == l.op &&
                o.collective == l.collective && o.line == l.line && o.file == l.file;
      }
      if (!ready) continue;
      pending &= ~m;
      if (l.collective != nullptr) {
        for (uint32_t bits = m; bits != 0; bits &= bits - 1) {
          const Lane& o = b.lanes[w0 + __builtin_ctz(bits)];
          if (o.value != l.value || o.arg != l.arg || o.layout != l.layout) {
            b.error = std::string(l.collective) + " at " + where(l.file, l.line) + ": " +
                      thread_str(o) + " passes " + collective_args_str(o) + " but " +
                      thread_str(l) + " passes " + collective_args_str(l) +
                      "; every lane of the warp must pass the same arguments";
            return;
          }
        }
      }
      uint64_t ballot = 0;
      for (uint32_t bits = m; bits != 0; bits &= bits - 1) {
        const int j = __builtin_ctz(bits);
        if (b.lanes[w0 + j].value & 1u) ballot |= (1ull << j);
      }
      for (uint32_t bits = m; bits != 0; bits &= bits - 1) {
        const int lane = __builtin_ctz(bits);
        Lane& x = b.lanes[w0 + lane];
        x.state = State::Runnable;
        runnable.push_back(w0 + lane);
        if (x.syncwarp) continue;
        const int width = x.width;
        const int seg0 = (lane / width) * width, seg1 = seg0 + width;
        int src = lane;
        switch (x.op) {
          case WarpOp::Shfl:
            src = seg0 + (x.arg & (width - 1));
            break;
          case WarpOp::ShflXor:
            src = lane ^ x.arg;
            src = (src >= seg1) ? lane : src;
            break;
          case WarpOp::ShflUp:
            src = lane - x.arg;
            src = (src < seg0) ? lane : src;
            break;
          case WarpOp::ShflDown:
            src = lane + x.arg;
            src = (src >= seg1) ? lane : src;
            break;
          case WarpOp::Ballot:
            x.result = ballot;
            continue;
          case WarpOp::All:
            x.result = (ballot == m) ? 1 : 0;
            continue;
          case WarpOp::Any:
            x.result = ballot != 0 ? 1 : 0;
            continue;
        }
        if (src < 0 || src >= 32 || !(m & (1u << src))) {
          if (b.error.empty()) {
            b.error = std::string(op_name(x)) + " at " + where(x.file, x.line) + ": " +
                      thread_str(x) + " reads lane " + std::to_string(src) +
                      ", which is not in the mask (undefined on a GPU)";
          }
          return;
        }
        x.result = b.lanes[w0 + src].value;
      }
    }
  }
}

// Releases __syncthreads when every live thread waits at the same one; otherwise explains the
// deadlock in b.error.
void resolve_barrier_or_fail(Block& b) {
  const Lane* at_barrier = nullptr;
  const Lane* exited = nullptr;
  const Lane* other = nullptr;  // at a warp call nobody completes, or at a different barrier
  int waiting = 0;
  for (const Lane& l : b.lanes) {
    if (l.state == State::Barrier) {
      ++waiting;
      if (at_barrier == nullptr) {
        at_barrier = &l;
      } else if ((l.line != at_barrier->line || l.file != at_barrier->file) && other == nullptr) {
        other = &l;
      }
    } else if (l.state == State::Done) {
      if (exited == nullptr) exited = &l;
    } else if (other == nullptr) {
      other = &l;
    }
  }
  if (at_barrier != nullptr && exited == nullptr && other == nullptr) {
    for (Lane& l : b.lanes) l.state = State::Runnable;
    return;
  }
  std::string why;
  if (at_barrier != nullptr && exited != nullptr && other == nullptr) {
    why = "__syncthreads at " + where(at_barrier->file, at_barrier->line) + " is reached by " +
          std::to_string(waiting) + " of " + std::to_string(b.lanes.size()) +
          " threads; the others have exited (e.g. " + thread_str(*exited) + ")";
  } else if (other != nullptr && other->state == State::Barrier) {
    why = "threads wait at different barriers: " + thread_str(*at_barrier) + " " +
          state_str(*at_barrier) + ", " + thread_str(*other) + " " + state_str(*other);
  } else {
    // A warp call that cannot complete: name a lane of its mask that is elsewhere.
    const Lane& l = *other;
    std::string missing;
    const int w0 = l.index / 32 * 32;
    for (int j = 0; j < 32 && missing.empty(); ++j) {
      if (!(l.mask & (1u << j))) continue;
      const int k = w0 + j;
      if (k >= static_cast<int>(b.lanes.size())) {
        missing = "lane " + std::to_string(j) + " does not exist (the block has " +
                  std::to_string(b.lanes.size()) + " threads)";
      } else {
        const Lane& o = b.lanes[k];
        if (o.state != State::Warp || o.mask != l.mask || o.line != l.line || o.file != l.file) {
          missing = thread_str(o) + " " + state_str(o);
        }
      }
    }
    if (missing.empty() && !(l.mask & (1u << (l.index % 32))))
      missing = "the calling lane is not in its own mask";
    why = std::string(op_name(l)) + " at " + where(l.file, l.line) + " by " + thread_str(l) +
          " never completes: " + missing;
  }
  b.error = "deadlock: " + why;
}

void run_block(Block& b, ThreadOrder order, XorShift& rng) {
  const int n = static_cast<int>(b.lanes.size());
  for (int i = 0; i < n; ++i) {
    Lane& l = b.lanes[i];
    l.block = &b;
    l.stack = &tls_stacks.get(static_cast<size_t>(i));
#if defined(TRIDENT_EMU_ASAN)
    // A faulted launch abandons its fibers mid-frame, leaving their frames' redzones poisoned
    // in the pooled stack: a fresh fiber must not inherit them.
    __asan_unpoison_memory_region(l.stack->bottom(), l.stack->usable());
#endif
    l.fiber = ctx::make_fcontext(l.stack->top(), l.stack->usable(), lane_entry);
  }
  std::vector<int> runnable(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) runnable[i] = i;
  std::vector<uint32_t> waiting(static_cast<size_t>((n + 31) / 32));
  int done = 0;
  for (;;) {
    // Run every runnable thread to its next sync point, in this pass's order.
    if (order == ThreadOrder::Reverse) {
      std::sort(runnable.begin(), runnable.end(), std::greater<int>());
    } else if (order == ThreadOrder::Shuffle) {
      for (size_t i = runnable.size(); i > 1; --i)
        std::swap(runnable[i - 1], runnable[rng.next() % i]);
    } else {
      std::sort(runnable.begin(), runnable.end());
    }
    std::fill(waiting.begin(), waiting.end(), 0u);
    for (int i : runnable) {
      Lane& l = b.lanes[i];
      resume(b, l);
      if (!b.error.empty()) return;
      if (l.state == State::Done) ++done;
    }
    if (done == n) return;
    runnable.clear();
    for (int i = 0; i < n; ++i) {
      if (b.lanes[i].state == State::Warp) waiting[i / 32] |= 1u << (i % 32);
    }
    resolve_warps(b, waiting, runnable);
    if (!b.error.empty()) return;
    if (!runnable.empty()) continue;
    resolve_barrier_or_fail(b);
    if (!b.error.empty()) return;
    for (int i = 0; i < n; ++i) runnable.push_back(i);
  }
}

void free_shared(Block& b) {
  std::free(b.dynamic);
  b.dynamic = nullptr;
  for (SharedVar& v : b.statics) std::free(v.ptr);
  b.statics.clear();
}

void* nan_filled(size_t bytes, size_t align) {
  align = std::max<size_t>(align, 16);
  const size_t rounded = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) std::abort();
  std::memset(p, 0xff, rounded);  // 0xff.. is NaN as f32, f64 and bf16
  return p;
}

struct LaunchCall {
  LaunchSite site;
  dim3 grid, block;
  size_t smem;
  size_t shared_limit;
  std::shared_ptr<void> keep_alive;
  void (*body)(void*);
  void* arg;
  ThreadOrder order;
  unsigned seed;
  unsigned launch_seed;  // distinct per launch, even for launches queued back to back
  int device;
};

void execute(const LaunchCall& c) {
  g_launches.fetch_add(1);
  XorShift rng(c.seed);
  const unsigned long long blocks = 1ull * c.grid.x * c.grid.y * c.grid.z;
  std::vector<unsigned long long> order(blocks);
  for (unsigned long long i = 0; i < blocks; ++i) order[i] = i;
  if (c.order == ThreadOrder::Reverse) std::reverse(order.begin(), order.end());
  if (c.order == ThreadOrder::Shuffle) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next() % i]);
  }
  const unsigned nthreads = c.block.x * c.block.y * c.block.z;
  Block b;
  b.body = c.body;
  b.arg = c.arg;
  b.shared_limit = c.shared_limit;
  b.lanes.resize(nthreads);
  for (unsigned long long lin : order) {
    const uint3 bi{static_cast<unsigned>(lin % c.grid.x),
                   static_cast<unsigned>((lin / c.grid.x) % c.grid.y),
                   static_cast<unsigned>(lin / (1ull * c.grid.x * c.grid.y))};
    for (unsigned t = 0; t < nthreads; ++t) {
      Lane& l = b.lanes[t];
      l = Lane{};
      l.index = static_cast<int>(t);
      l.tc.thread_idx =
          uint3{t % c.block.x, (t / c.block.x) % c.block.y, t / (c.block.x * c.block.y)};
      l.tc.block_idx = bi;
      l.tc.block_dim = c.block;
      l.tc.grid_dim = c.grid;
    }
    b.error.clear();
    b.dynamic_bytes = c.smem;
    b.static_bytes = 0;
    b.dynamic = c.smem > 0 ? nan_filled(c.smem, 128) : nullptr;
    b.warp_scratch.assign((nthreads + 31) / 32, {});
    b.launch_seed = c.launch_seed;
    run_block(b, c.order, rng);
    free_shared(b);
    if (!b.error.empty()) {
      fault(c.device, cudaErrorLaunchFailure,
            "kernel " + std::string(c.site.name) + " launched at " +
                where(c.site.file, c.site.line) + " with grid " +
                dim_str(c.grid.x, c.grid.y, c.grid.z) + " block " +
                dim_str(c.block.x, c.block.y, c.block.z) + ", block " + dim_str(bi.x, bi.y, bi.z) +
                ": " + b.error);
      return;
    }
  }
}

void fail_in_kernel(const std::string& what) {
  Lane& l = current_lane("a device function");
  if (l.block->error.empty()) l.block->error = thread_str(l) + ": " + what;
  for (;;) yield_to_scheduler(l, false);  // the scheduler stops at the error and never returns
}

}  // namespace

const ThreadContext& this_thread() {
  return current_lane("threadIdx/blockIdx").tc;
}

namespace ptx {

void cp_async(void* dst, const void* src, unsigned bytes, const char* file, int line) {
  Lane& l = current_lane("cp.async");
  const auto misaligned = [bytes](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % bytes != 0;
  };
  if (bytes != 4 && bytes != 8 && bytes != 16) {
    device_trap(("cp.async of " + std::to_string(bytes) + " bytes (4, 8 or 16)").c_str(), file,
                line);
  }
  if (misaligned(dst) || misaligned(src)) {
    device_trap(("cp.async of " + std::to_string(bytes) +
                 " bytes from or to an address not aligned to them")
                    .c_str(),
                file, line);
  }
  if (!is_shared_range(dst, bytes)) {
    device_trap("cp.async to an address outside the block's shared memory", file, line);
  }
  Lane::AsyncCopy c{dst, {}, bytes, 0};
  std::memcpy(c.bytes, src, bytes);  // the source is read at issue, the destination written later
  l.async_copies.push_back(c);
}

void cp_async_commit(const char* file, int line) {
  (void)file;
  (void)line;
  Lane& l = current_lane("cp.async.commit_group");
  ++l.async_groups;
  for (auto& c : l.async_copies) {
    if (c.group == 0) c.group = l.async_groups;
  }
}

void cp_async_wait(int pending, const char* file, int line) {
  (void)file;
  (void)line;
  Lane& l = current_lane("cp.async.wait_group");
  const int64_t last = l.async_groups - pending;  // groups 1..last complete
  auto& v = l.async_copies;
  auto done = [last](const Lane::AsyncCopy& c) { return c.group > 0 && c.group <= last; };
  for (const auto& c : v) {
    if (done(c)) std::memcpy(c.dst, c.bytes, c.size);
  }
  v.erase(std::remove_if(v.begin(), v.end(), done), v.end());
}

}  // namespace ptx

void syncthreads(const char* file, int line) {
  Lane& l = current_lane("__syncthreads");
  l.state = State::Barrier;
  l.file = file;
  l.line = line;
  yield_to_scheduler(l, false);
}

void syncwarp(unsigned mask, const char* file, int line) {
  Lane& l = current_lane("__syncwarp");
  l.state = State::Warp;
  l.syncwarp = true;
  l.collective = nullptr;
  l.op = WarpOp::Shfl;
  l.mask = mask;
  l.value = 0;
  l.arg = 0;
  l.width = 32;
  l.file = file;
  l.line = line;
  yield_to_scheduler(l, false);
}

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int arg, int width,
                       const char* file, int line) {
  Lane& l = current_lane("a warp-level function");
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
    fail_in_kernel("warp call at " + where(file, line) + " with width " + std::to_string(width) +
                   " (must be a power of two <= 32)");
  }
  l.state = State::Warp;
  l.syncwarp = false;
  l.collective = nullptr;
  l.op = op;
  l.mask = mask;
  l.value = bits;
  l.arg = arg;
  l.width = width;
  l.file = file;
  l.line = line;
  yield_to_scheduler(l, false);
  return l.result;
}

void warp_collective(const char* name, const void* ptr, unsigned ldm, int layout, const char* file,
                     int line) {
  Lane& l = current_lane(name);
  l.state = State::Warp;
  l.syncwarp = true;
  l.collective = name;
  l.layout = layout;
  l.op = WarpOp::Shfl;
  l.mask = 0xffffffffu;
  l.value = reinterpret_cast<uintptr_t>(ptr);
  l.arg = static_cast<int>(ldm);
  l.width = 32;
  l.file = file;
  l.line = line;
  yield_to_scheduler(l, false);
}

void* warp_scratch(size_t bytes) {
  Lane& l = current_lane("a warp-collective call");
  std::vector<unsigned char>& s = l.block->warp_scratch[static_cast<size_t>(l.index / 32)];
  if (s.size() < bytes) s.resize(bytes);
  return s.data();
}

bool is_shared_range(const void* ptr, size_t bytes) {
  const Block& b = *current_lane("a shared-memory check").block;
  const auto* p = static_cast<const unsigned char*>(ptr);
  const auto inside = [&](const void* base, size_t size) {
    const auto* lo = static_cast<const unsigned char*>(base);
    return base != nullptr && p >= lo && p + bytes <= lo + size;
  };
  if (inside(b.dynamic, b.dynamic_bytes)) return true;
  for (const SharedVar& v : b.statics) {
    if (inside(v.ptr, v.bytes)) return true;
  }
  return false;
}

int thread_rank() {
  return current_lane("a warp-collective call").index;
}

unsigned launch_seed() {
  return current_lane("a warp-collective call").block->launch_seed;
}

void device_trap(const char* what, const char* file, int line) {
  fail_in_kernel(std::string(what) + " at " + where(file, line));
  std::abort();
}

void* dynamic_shared_bytes() {
  Lane& l = current_lane("dynamic shared memory");
  return l.block->dynamic;
}

void* static_shared_bytes(const char* file, int line, size_t bytes, size_t align) {
  Lane& l = current_lane("__shared__");
  Block& b = *l.block;
  for (SharedVar& v : b.statics) {
    if (v.line == line && v.file == file) return v.ptr;
  }
  b.static_bytes += bytes;
  if (b.static_bytes + b.dynamic_bytes > b.shared_limit) {
    fail_in_kernel("shared memory of " + std::to_string(b.static_bytes) + " static + " +
                   std::to_string(b.dynamic_bytes) + " dynamic bytes exceeds the " +
                   std::to_string(b.shared_limit) + "-byte limit");
  }
  b.statics.push_back(SharedVar{file, line, bytes, nan_filled(bytes, align)});
  return b.statics.back().ptr;
}

void set_thread_order(ThreadOrder order, unsigned seed) {
  g_order.store(static_cast<int>(order));
  g_seed.store(seed);
}

ThreadOrder thread_order() {
  return order_now();
}

long long launches_executed() {
  return g_launches.load();
}

void submit_launch(const LaunchSite& site, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   std::shared_ptr<void> keep_alive, void (*body)(void*), void* arg) {
  const int device = stream != nullptr ? stream_device(stream) : current_device();
  const auto bad = [&](cudaError_t e, const std::string& why) {
    report("launch of " + std::string(site.name) + " at " + where(site.file, site.line) +
           " refused: " + why);
    set_last_error(e);
  };
  if (device < 0) return bad(cudaErrorInvalidResourceHandle, "unknown stream");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device >= count) {
    return bad(cudaErrorNoDevice, "no device");
  }
  const cudaDeviceProp& p = device_props(device);
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    return bad(cudaErrorInvalidConfiguration, "grid " + dim_str(grid.x, grid.y, grid.z) +
                                                  " block " + dim_str(block.x, block.y, block.z) +
                                                  " has a zero dimension");
  }
  if (threads > static_cast<unsigned long long>(p.maxThreadsPerBlock) ||
      block.x > static_cast<unsigned>(p.maxThreadsDim[0]) ||
      block.y > static_cast<unsigned>(p.maxThreadsDim[1]) ||
      block.z > static_cast<unsigned>(p.maxThreadsDim[2])) {
    return bad(cudaErrorInvalidConfiguration, "block " + dim_str(block.x, block.y, block.z) +
                                                  " exceeds 1024 threads or (1024, 1024, 64)");
  }
  if (grid.x > static_cast<unsigned>(p.maxGridSize[0]) ||
      grid.y > static_cast<unsigned>(p.maxGridSize[1]) ||
      grid.z > static_cast<unsigned>(p.maxGridSize[2])) {
    return bad(cudaErrorInvalidConfiguration,
               "grid " + dim_str(grid.x, grid.y, grid.z) + " exceeds (2^31-1, 65535, 65535)");
  }
  size_t limit = p.sharedMemPerBlock;
  const int opt_in = func_max_dynamic_smem(site.func);
  if (smem > p.sharedMemPerBlock) {
    if (static_cast<size_t>(opt_in) < smem) {
      return bad(
          cudaErrorInvalidValue,
          std::to_string(smem) +
              " bytes of dynamic shared memory need "
              "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, >= " +
              std::to_string(smem) + ") first (set: " + std::to_string(opt_in) + ")");
    }
  }
  if (opt_in > 0)
    limit = std::max(
        limit, std::min<size_t>(p.sharedMemPerBlockOptin, static_cast<size_t>(opt_in) + 48 * 1024));
  LaunchCall call{site,
                  grid,
                  block,
                  smem,
                  limit,
                  std::move(keep_alive),
                  body,
                  arg,
                  order_now(),
                  g_seed.load() + static_cast<unsigned>(g_launches.load()),
                  g_seed.load() * 0x9E3779B9u + g_submitted.fetch_add(1),
                  device};
  const cudaError_t e = enqueue(
      stream, [call] { execute(call); }, site.name);
  if (e != cudaSuccess) set_last_error(e);
}

}  // namespace cuemu
