#include "trident/tools/step_analysis.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "trident/core/error.hpp"

namespace trident::tools {

using trace::Category;

const char* share_name(Share s) {
  switch (s) {
    case Share::Compute:
      return "compute";
    case Share::Optimizer:
      return "optimizer";
    case Share::Data:
      return "data";
    case Share::Other:
      return "other";
    case Share::Comm:
      return "exposed comm";
    case Share::Bubble:
      return "idle: bubble";
    case Share::Straggler:
      return "idle: straggler";
  }
  return "?";
}

double Breakdown::busy() const {
  return at(Share::Compute) + at(Share::Optimizer) + at(Share::Data) + at(Share::Other);
}

Breakdown& Breakdown::operator+=(const Breakdown& o) {
  step += o.step;
  for (int i = 0; i < kNumShares; ++i) by_share[i] += o.by_share[i];
  return *this;
}

namespace {

using CollectiveKey = std::tuple<std::string, int64_t, int64_t>;  // name, group, seq
struct Arrivals {
  double last_begin = 0;
  int ranks = 0;
};

bool is_collective(const SpanRecord& s) {
  return s.cat == Category::Comm && s.has("seq") && s.has("group");
}

Share share_of(Category c, bool idle) {
  if (idle) return Share::Bubble;
  switch (c) {
    case Category::Compute:
    case Category::Step:
      return Share::Compute;
    case Category::Optimizer:
      return Share::Optimizer;
    case Category::Data:
      return Share::Data;
    case Category::Comm:
      return Share::Comm;
    case Category::Idle:
      return Share::Bubble;
    case Category::Checkpoint:
    case Category::Other:
      return Share::Other;
  }
  return Share::Other;
}

double overlap(double a0, double a1, double b0, double b1) {
  return std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
}

// [a, b) minus the sorted, disjoint `holes`, appended to `out` as `share`, except the part
// inside `strag` (if non-empty), which becomes Straggler.
void emit(std::vector<Segment>& out, double a, double b, Share share,
          std::pair<double, double> strag) {
  if (b <= a) return;
  if (share == Share::Comm && strag.second > strag.first) {
    const double s0 = std::clamp(strag.first, a, b), s1 = std::clamp(strag.second, a, b);
    if (s1 > s0) {
      if (s0 > a) out.push_back({a, s0, Share::Comm});
      out.push_back({s0, s1, Share::Straggler});
      if (b > s1) out.push_back({s1, b, Share::Comm});
      return;
    }
  }
  out.push_back({a, b, share});
}

RankTimeline classify(const RankTrace& r, const std::map<CollectiveKey, Arrivals>& arrivals) {
  RankTimeline tl;
  tl.rank = r.rank;
  tl.label = r.process_name.empty() ? str_cat("rank ", r.rank) : r.process_name;

  // Collectives on this rank's MPI threads, by end time, and everything they ran.
  std::vector<const SpanRecord*> collectives;
  for (const auto& t : r.tracks) {
    if (t.tid == 0) continue;
    const bool gpu = t.name.rfind("cuda:", 0) == 0;
    for (const auto& s : t.spans) {
      if (gpu) tl.gpu_busy.emplace_back(s.begin_us, s.end_us);
      if (s.cat != Category::Comm) continue;
      tl.comm_busy.emplace_back(s.begin_us, s.end_us);
      tl.comm_bytes.push_back(static_cast<double>(std::max<int64_t>(0, s.arg("bytes", 0))));
      if (is_collective(s)) collectives.push_back(&s);
    }
  }
  std::sort(collectives.begin(), collectives.end(),
            [](const SpanRecord* a, const SpanRecord* b) { return a->end_us < b->end_us; });
  // The straggler interval of the collective that finished last within [a, b].
  auto straggler_in = [&](double a, double b) -> std::pair<double, double> {
    auto it = std::upper_bound(collectives.begin(), collectives.end(), b,
                               [](double v, const SpanRecord* s) { return v < s->end_us; });
    if (it == collectives.begin()) return {0, 0};
    const SpanRecord& c = **std::prev(it);
    if (c.end_us < a) return {0, 0};
    const auto f = arrivals.find({c.name, c.arg("group"), c.arg("seq")});
    if (f == arrivals.end() || f->second.ranks < 2 || f->second.last_begin <= c.begin_us)
      return {0, 0};
    return {c.begin_us, std::min(c.end_us, f->second.last_begin)};
  };

  const TrackRecord* main = r.main_track();
  if (main == nullptr) return tl;
  const auto& spans = main->spans;
  const size_t n = spans.size();
  std::vector<int> parent(n, -1);
  std::vector<double> end(n);
  std::vector<char> idle(n, 0);
  std::vector<std::vector<size_t>> children(n);
  std::vector<size_t> stack;
  std::map<std::string, double> outside;
  for (size_t i = 0; i < n; ++i) {
    end[i] = spans[i].end_us;
    while (!stack.empty() && end[stack.back()] <= spans[i].begin_us) stack.pop_back();
    if (stack.empty() && spans[i].cat != Category::Step && spans[i].cat != Category::Comm &&
        spans[i].cat != Category::Idle)  // validation, checkpoints; not setup's collectives
      outside[spans[i].name] += spans[i].end_us - spans[i].begin_us;
    if (!stack.empty()) {
      parent[i] = static_cast<int>(stack.back());
      end[i] = std::min(end[i], end[stack.back()]);  // rounding in the file
      children[stack.back()].push_back(i);
    }
    idle[i] =
        spans[i].cat == Category::Idle || (parent[i] >= 0 && idle[static_cast<size_t>(parent[i])]);
    stack.push_back(i);
    if (spans[i].cat == Category::Step) {
      tl.steps.emplace_back(spans[i].arg("step", static_cast<int64_t>(tl.steps.size()) + 1),
                            spans[i].begin_us);
      tl.step_spans.emplace_back(spans[i].begin_us, end[i]);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const Share share = share_of(spans[i].cat, idle[i]);
    const auto strag = share == Share::Comm ? straggler_in(spans[i].begin_us, end[i])
                                            : std::pair<double, double>{0, 0};
    double at = spans[i].begin_us;
    for (size_t c : children[i]) {
      emit(tl.segments, at, spans[c].begin_us, share, strag);
      at = std::max(at, end[c]);
    }
    emit(tl.segments, at, end[i], share, strag);
  }
  std::sort(tl.segments.begin(), tl.segments.end(),
            [](const Segment& a, const Segment& b) { return a.begin_us < b.begin_us; });
  tl.outside_steps.assign(outside.begin(), outside.end());
  return tl;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string pad(const std::string& s, size_t w, bool left = false) {
  if (s.size() >= w) return s;
  return left ? s + std::string(w - s.size(), ' ') : std::string(w - s.size(), ' ') + s;
}

std::string human_flops(double f) {
  const char* units[] = {"", "K", "M", "G", "T", "P"};
  int u = 0;
  while (f >= 1000 && u < 5) {
    f /= 1000;
    ++u;
  }
  return fmt("%.3g ", f) + units[u] + "FLOP";
}

}  // namespace

std::vector<RankTimeline> build_timelines(const std::vector<RankTrace>& ranks) {
  std::map<CollectiveKey, Arrivals> arrivals;
  for (const auto& r : ranks) {
    for (const auto& t : r.tracks) {
      if (t.tid == 0) continue;
      for (const auto& s : t.spans) {
        if (!is_collective(s)) continue;
        Arrivals& a = arrivals[{s.name, s.arg("group"), s.arg("seq")}];
        a.last_begin = a.ranks == 0 ? s.begin_us : std::max(a.last_begin, s.begin_us);
        ++a.ranks;
      }
    }
  }
  std::vector<RankTimeline> out;
  for (const auto& r : ranks) out.push_back(classify(r, arrivals));
  return out;
}

RunReport analyze_run(const std::vector<RankTrace>& ranks,
                      const std::vector<RankTimeline>& timelines, int skip) {
  TRIDENT_CHECK(!ranks.empty() && ranks.size() == timelines.size(),
                "analyze_run: no traces to analyse");
  RunReport rep;
  rep.world_size = static_cast<int>(ranks.size());
  rep.skipped_steps = skip;
  bool first = true;
  for (size_t k = 0; k < ranks.size(); ++k) {
    const RankTimeline& tl = timelines[k];
    TRIDENT_CHECK(!tl.step_spans.empty(), "rank ", tl.rank,
                  ": the trace has no step spans "
                  "(record it with trident-train --trace, or mark steps with a Step span)");
    const size_t n = tl.step_spans.size();
    const size_t s = std::min<size_t>(static_cast<size_t>(std::max(skip, 0)), n - 1);
    rep.skipped_steps = std::min(rep.skipped_steps, static_cast<int>(s));
    RankReport rr;
    rr.rank = tl.rank;
    rr.label = tl.label;
    rr.steps = static_cast<int>(n - s);
    for (size_t i = s; i < n; ++i) {
      const auto [b, e] = tl.step_spans[i];
      rr.total.step += e - b;
      for (const Segment& seg : tl.segments) {
        if (seg.end_us <= b) continue;
        if (seg.begin_us >= e) break;
        rr.total.add(seg.share, overlap(seg.begin_us, seg.end_us, b, e));
      }
      for (size_t c = 0; c < tl.comm_busy.size(); ++c) {
        rr.comm_thread_us += overlap(tl.comm_busy[c].first, tl.comm_busy[c].second, b, e);
        if (tl.comm_busy[c].first >= b && tl.comm_busy[c].first < e)
          rr.comm_thread_bytes += tl.comm_bytes[c];
      }
      for (const auto& [g0, g1] : tl.gpu_busy) rr.gpu_busy_us += overlap(g0, g1, b, e);
      if (first || b < rep.window_begin_us) rep.window_begin_us = b;
      if (first || e > rep.window_end_us) rep.window_end_us = e;
      first = false;
    }
    if (k == 0) {
      rep.outside_steps = tl.outside_steps;
      rep.first_step = tl.steps[s].first;
      rep.last_step = tl.steps[n - 1].first;
    }
    rep.overall += rr.total;
    rep.ranks.push_back(std::move(rr));
  }
  int total_steps = 0;
  double worst = -1;
  for (const auto& rr : rep.ranks) {
    total_steps += rr.steps;
    const double busy = rr.total.busy() / rr.steps;
    if (busy > worst) {
      worst = busy;
      rep.slowest_rank = rr.rank;
    }
  }
  rep.mean_step_us = rep.overall.step / total_steps;
  const nlohmann::json& meta = ranks[0].metadata;
  if (meta.contains("flops_per_step") && meta["flops_per_step"].is_number())
    rep.flops_per_step = meta["flops_per_step"].get<double>();
  if (meta.contains("peak_flops_per_rank") && meta["peak_flops_per_rank"].is_number())
    rep.peak_flops = meta["peak_flops_per_rank"].get<double>();
  if (rep.peak_flops && *rep.peak_flops > 0 && rep.flops_per_step > 0 && rep.mean_step_us > 0)
    rep.mfu = rep.flops_per_step / (rep.mean_step_us * 1e-6) / (rep.world_size * *rep.peak_flops);
  std::string d;
  for (const char* key : {"layout", "model", "device"}) {
    if (meta.contains(key) && meta[key].is_string())
      d += (d.empty() ? "" : " | ") + meta[key].get<std::string>();
  }
  rep.description = d;
  return rep;
}

std::string format_report(const RunReport& rep) {
  std::string out;
  out += str_cat("trident-report: ", rep.world_size, " rank", rep.world_size > 1 ? "s" : "",
                 rep.description.empty() ? "" : " | " + rep.description, "\n");
  out += str_cat("steps ", rep.first_step, "..", rep.last_step, " (", rep.skipped_steps,
                 " warm-up step", rep.skipped_steps == 1 ? "" : "s", " left out), mean step ",
                 fmt("%.2f", rep.mean_step_us / 1000), " ms\n\n");
  const size_t lw = 26;
  out += pad("rank", lw, true) + pad("step ms", 9) + pad("busy", 8) + pad("exposed", 9) +
         pad("bubble", 8) + pad("straggl", 9) + " |" + pad("compute", 9) + pad("optim", 7) +
         pad("data", 7) + pad("other", 7) + " |" + pad("MPI thr ms", 11) + pad("MB", 8) + "\n";
  auto row = [&](const std::string& label, const Breakdown& b, int steps, double comm_us,
                 double comm_bytes) {
    const double pct = 100.0 / b.step;
    std::string line = pad(label, lw, true) + pad(fmt("%.2f", b.step / steps / 1000), 9) +
                       pad(fmt("%.1f%%", b.busy() * pct), 8) +
                       pad(fmt("%.1f%%", b.at(Share::Comm) * pct), 9) +
                       pad(fmt("%.1f%%", b.at(Share::Bubble) * pct), 8) +
                       pad(fmt("%.1f%%", b.at(Share::Straggler) * pct), 9) + " |" +
                       pad(fmt("%.1f%%", b.at(Share::Compute) * pct), 9) +
                       pad(fmt("%.1f%%", b.at(Share::Optimizer) * pct), 7) +
                       pad(fmt("%.1f%%", b.at(Share::Data) * pct), 7) +
                       pad(fmt("%.1f%%", b.at(Share::Other) * pct), 7) + " |" +
                       pad(fmt("%.2f", comm_us / steps / 1000), 11) +
                       pad(fmt("%.2f", comm_bytes / steps / 1e6), 8) + "\n";
    return line;
  };
  double comm_us = 0, comm_bytes = 0;
  int steps = 0;
  for (const auto& r : rep.ranks) {
    out += row(r.label, r.total, r.steps, r.comm_thread_us, r.comm_thread_bytes);
    comm_us += r.comm_thread_us;
    comm_bytes += r.comm_thread_bytes;
    steps += r.steps;
  }
  out += row("all ranks", rep.overall, steps, comm_us, comm_bytes);
  out +=
      "\nbusy = compute + optimizer + data + other; exposed = blocked on communication; "
      "bubble = pipeline wait;\nstraggler = waiting in a collective for a late rank; MPI thr = "
      "collectives and transfers running on the\ncommunication threads (overlapped or not), "
      "per step; MB = bytes they moved per step.\n\n";
  std::string gpu;
  for (const auto& r : rep.ranks) {
    if (r.gpu_busy_us > 0)
      gpu += str_cat(gpu.empty() ? "" : ", ", r.rank, ": ",
                     fmt("%.1f%%", 100 * r.gpu_busy_us / r.total.step));
  }
  if (!gpu.empty()) out += "GPU busy (device spans) per rank, share of step time: " + gpu + "\n";
  if (!rep.outside_steps.empty()) {
    out += "outside the steps (rank 0, whole run):";
    for (const auto& [name, us] : rep.outside_steps)
      out += str_cat(" ", name, " ", fmt("%.1f", us / 1000), " ms;");
    out += "\n";
  }
  const RankReport* slow = nullptr;
  for (const auto& r : rep.ranks)
    if (r.rank == rep.slowest_rank) slow = &r;
  const double mean_busy = rep.overall.busy() / steps;
  out += str_cat("slowest rank: ", slow->label, ", busy ",
                 fmt("%.2f", slow->total.busy() / slow->steps / 1000),
                 " ms per step (mean over ranks ", fmt("%.2f", mean_busy / 1000), " ms, +",
                 fmt("%.1f", 100.0 * (slow->total.busy() / slow->steps / mean_busy - 1)), "%)\n");
  if (rep.mfu) {
    out += str_cat("MFU: ", fmt("%.1f%%", 100 * *rep.mfu), " (", human_flops(rep.flops_per_step),
                   " per step, peak ", human_flops(*rep.peak_flops), "/s per rank)\n");
  } else if (rep.flops_per_step > 0) {
    out += str_cat("MFU: n/a (no peak FLOP/s for this device; CPU run); model ",
                   human_flops(rep.flops_per_step), " per step = ",
                   human_flops(rep.flops_per_step / (rep.mean_step_us * 1e-6) / rep.world_size),
                   "/s per rank\n");
  }
  return out;
}

}  // namespace trident::tools
