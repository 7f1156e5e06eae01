// The recorder's own cost per event, in CPU time of the recording thread (so a loaded machine
// does not inflate it): a disabled span, an enabled span with two arguments, a renamed span
// (the blocking-wait spans build their name), and an explicit-time record() as the MPI
// threads make. Prints one JSON line; bench/trace_overhead.sh multiplies by events per step.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "trident/trace/trace.hpp"

using namespace trident;

namespace {

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// Best of 5 rounds of n calls, ns per call.
template <typename F>
double per_call_ns(int n, F&& f) {
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    const double t0 = thread_cpu_ns();
    for (int i = 0; i < n; ++i) f(i);
    best = std::min(best, (thread_cpu_ns() - t0) / n);
  }
  return best;
}

}  // namespace

int main() {
  const int n = 20000;  // per round: a session's worth of a few hundred steps
  const double off = per_call_ns(n, [](int i) {
    trace::Span s("forward", trace::Category::Compute);
    s.arg("micro", i);
  });
  double span = 0, renamed = 0, record = 0;
  {
    trace::Session session({0, 1, ""});
    span = per_call_ns(n, [](int i) {
      trace::Span s("forward", trace::Category::Compute);
      s.arg("micro", i);
      s.arg("stage", 1);
    });
    renamed = per_call_ns(n, [](int) {
      trace::Span s("wait", trace::Category::Comm);
      if (s.active()) s.rename("wait " + std::string("all_reduce of 16384 f32 (sum)"));
    });
    record = per_call_ns(n, [](int i) {
      trace::record(std::string("all_reduce dp"), trace::Category::Comm, i, i + 1,
                    {{"bytes", 65536}, {"seq", i}, {"group", 0}});
    });
  }
  std::printf(
      "{\"disabled_span_ns\": %.1f, \"span_ns\": %.1f, \"renamed_span_ns\": %.1f, "
      "\"record_ns\": %.1f}\n",
      off, span, renamed, record);
  return 0;
}
