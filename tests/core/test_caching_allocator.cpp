// CachingAllocator's bookkeeping, through an allocator whose "streams" and "events" are plain
// counters the test completes by hand: size reuse, the stream rule (a block used on another
// stream is handed out again only once the event recorded at its free completed), inner
// pointers, foreign pointers and waiting for pending blocks before giving memory back.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <memory>
#include <set>
#include <vector>

#include "trident/core/allocator.hpp"
#include "trident/core/error.hpp"

namespace trident {
namespace {

// A stream is a counter of work items queued on it and a counter of those completed; an event
// remembers how many were queued when it was recorded.
struct FakeStream {
  int queued = 0, completed = 0;
};
struct FakeEvent {
  FakeStream* stream;
  int target;
};

class FakeStreamAllocator final : public CachingAllocator {
 public:
  ~FakeStreamAllocator() override { release_all(); }
  int live_events() const { return live_events_; }
  int raw_frees = 0;
  bool fail_raw_alloc = false;

 protected:
  void* raw_alloc(size_t bytes) override { return fail_raw_alloc ? nullptr : std::malloc(bytes); }
  void raw_free(void* ptr) override {
    ++raw_frees;
    std::free(ptr);
  }
  void* record_event(void* stream) override {
    auto* s = static_cast<FakeStream*>(stream);
    ++live_events_;
    return new FakeEvent{s, s->queued};
  }
  bool event_done(void* event) override {
    const auto* e = static_cast<FakeEvent*>(event);
    return e->stream->completed >= e->target;
  }
  void wait_event(void* event) override {
    auto* e = static_cast<FakeEvent*>(event);
    if (e->stream->completed < e->target) e->stream->completed = e->target;  // "drains"
  }
  void release_event(void* event) override {
    --live_events_;
    delete static_cast<FakeEvent*>(event);
  }

 private:
  int live_events_ = 0;
};

TEST_CASE("a freed block is reused for a request of similar size") {
  FakeStreamAllocator a;
  void* p = a.allocate(1000);
  a.deallocate(p, 1000);
  CHECK(a.allocate(900) == p);
  CHECK(a.stats().system_allocs == 1);
}

TEST_CASE("a block used on another stream waits for that stream's work before reuse") {
  FakeStreamAllocator a;
  FakeStream comm;
  void* p = a.allocate(4096);
  comm.queued = 1;  // a collective on p is queued on the communication stream
  a.record_stream(p, &comm);
  a.deallocate(p, 4096);  // freed on the host while the collective may still run
  CHECK(a.pending_blocks() == 1);
  void* q = a.allocate(4096);
  CHECK(q != p);  // the pending block is not handed out
  CHECK(a.stats().system_allocs == 2);
  comm.completed = 1;  // the collective finished
  void* r = a.allocate(4096);
  CHECK(r == p);  // polled on this allocation and reused
  CHECK(a.pending_blocks() == 0);
  CHECK(a.live_events() == 0);
  a.deallocate(q, 4096);
  a.deallocate(r, 4096);
}

TEST_CASE("only work queued on the stream before the free is waited for") {
  FakeStreamAllocator a;
  FakeStream copy;
  void* p = a.allocate(512);
  copy.queued = 2;
  a.record_stream(p, &copy);
  a.deallocate(p, 512);
  copy.queued = 5;  // later, unrelated work on the same stream
  copy.completed = 2;
  CHECK(a.allocate(512) == p);
}

TEST_CASE("every recorded stream must be done, and an inner pointer names its block") {
  FakeStreamAllocator a;
  FakeStream comm, copy;
  void* p = a.allocate(8192);
  comm.queued = copy.queued = 1;
  a.record_stream(static_cast<char*>(p) + 100, &comm);  // a view into the block
  a.record_stream(p, &copy);
  a.record_stream(p, &copy);  // recorded twice: one event
  a.deallocate(p, 8192);
  CHECK(a.live_events() == 2);
  comm.completed = 1;
  void* q = a.allocate(8192);
  CHECK(q != p);
  copy.completed = 1;
  CHECK(a.allocate(8192) == p);
  a.deallocate(q, 8192);
}

TEST_CASE("record_stream ignores memory the allocator did not hand out") {
  FakeStreamAllocator a;
  FakeStream comm;
  comm.queued = 1;
  std::vector<char> foreign(64);
  a.record_stream(foreign.data(), &comm);
  void* p = a.allocate(100);
  a.record_stream(static_cast<char*>(p) + 512, &comm);  // one past the 512-byte block
  a.deallocate(p, 100);
  CHECK(a.pending_blocks() == 0);
  CHECK(a.allocate(100) == p);
  CHECK(a.live_events() == 0);
}

TEST_CASE("a block without recorded streams is reusable at once, even after an earlier use") {
  FakeStreamAllocator a;
  FakeStream comm;
  void* p = a.allocate(2048);
  comm.queued = 1;
  a.record_stream(p, &comm);
  a.deallocate(p, 2048);
  comm.completed = 1;
  void* q = a.allocate(2048);
  REQUIRE(q == p);
  a.deallocate(q, 2048);  // this use recorded no stream: straight back to the free list
  CHECK(a.pending_blocks() == 0);
  CHECK(a.allocate(2048) == p);
}

TEST_CASE("out of memory waits for pending blocks and returns the cache before failing") {
  FakeStreamAllocator a;
  FakeStream comm;
  void* p = a.allocate(1 << 20);
  comm.queued = 1;
  a.record_stream(p, &comm);
  a.deallocate(p, 1 << 20);
  a.fail_raw_alloc = true;
  CHECK_THROWS_AS(a.allocate(4 << 20), Error);
  CHECK(a.pending_blocks() == 0);  // waited for, then given back
  CHECK(a.raw_frees == 1);
  CHECK(a.stats().reserved_bytes == 0);
  CHECK(a.live_events() == 0);
}

}  // namespace
}  // namespace trident
