#include "trident/tools/timeline.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "trident/core/error.hpp"
#include "trident/tools/font.hpp"
#include "trident/tools/plot.hpp"

namespace trident::tools {

namespace {

const Rgb kBlack{0, 0, 0}, kWhite{255, 255, 255}, kOutside{222, 222, 222}, kFrame{120, 120, 120};
const Rgb kHatch{150, 150, 150}, kStripIdle{238, 238, 238}, kPage{250, 250, 250};
constexpr int kRowH = 22, kStripH = 5, kGap = 8;

void fill_cell(Image& img, int x, int y, int h, Share s, bool covered) {
  if (!covered) {
    img.fill_rect(x, y, 1, h, kOutside);
    return;
  }
  if (s != Share::Straggler) {
    img.fill_rect(x, y, 1, h, share_color(s));
    return;
  }
  for (int yy = y; yy < y + h; ++yy) img.set(x, yy, (x + yy) % 4 == 0 ? kHatch : kWhite);
}

// Adds the overlap of [a, b) with each pixel column to cover[col].
template <typename F>
void spread(double a, double b, double t0, double dt, int cols, F&& add) {
  if (b <= t0 || a >= t0 + dt * cols) return;
  const int c0 = std::max(0, static_cast<int>(std::floor((a - t0) / dt)));
  const int c1 = std::min(cols - 1, static_cast<int>(std::floor((b - t0) / dt)));
  for (int c = c0; c <= c1; ++c) {
    const double lo = std::max(a, t0 + c * dt), hi = std::min(b, t0 + (c + 1) * dt);
    if (hi > lo) add(c, hi - lo);
  }
}

}  // namespace

Rgb share_color(Share s) {
  switch (s) {
    case Share::Compute:
      return {214, 39, 40};
    case Share::Optimizer:
      return {255, 140, 30};
    case Share::Data:
      return {31, 119, 180};
    case Share::Other:
      return {148, 103, 189};
    case Share::Comm:
      return {44, 160, 44};
    case Share::Bubble:
    case Share::Straggler:
      return kWhite;
  }
  return kWhite;
}

Image draw_timeline(const std::vector<RankTimeline>& ranks, const TimelineOptions& opts) {
  TRIDENT_CHECK(!ranks.empty(), "draw_timeline: no ranks");
  double t0 = opts.begin_us, t1 = opts.end_us;
  if (t1 <= t0) {
    bool any = false;
    for (const auto& r : ranks) {
      for (const auto& [b, e] : r.step_spans) {
        t0 = any ? std::min(t0, b) : b;
        t1 = any ? std::max(t1, e) : e;
        any = true;
      }
    }
    TRIDENT_CHECK(any && t1 > t0, "draw_timeline: the traces have no steps to draw");
  }
  int label_w = 0;
  for (const auto& r : ranks) label_w = std::max(label_w, text_width(r.label));
  bool any_gpu = false;
  for (const auto& r : ranks) any_gpu = any_gpu || !r.gpu_busy.empty();
  const int strips = any_gpu ? 2 * kStripH : kStripH;  // MPI threads, then the GPU
  const int left = label_w + 14, right = 16, top = 34;
  const int plot_w = std::max(100, opts.width - left - right);
  const int rows_h = static_cast<int>(ranks.size()) * (kRowH + strips + kGap);
  const int height = top + rows_h + 34 + 2 * kGlyphHeight + 14;
  Image img(left + plot_w + right, height, kPage);
  draw_text(img, left, 6, opts.title, kBlack);

  const double dt = (t1 - t0) / plot_w;
  for (size_t k = 0; k < ranks.size(); ++k) {
    const RankTimeline& r = ranks[k];
    const int y = top + static_cast<int>(k) * (kRowH + strips + kGap);
    draw_text(img, 4, y + (kRowH - 7) / 2, r.label, kBlack);
    std::vector<std::array<double, kNumShares>> cover(static_cast<size_t>(plot_w));
    for (auto& c : cover) c.fill(0);
    for (const Segment& s : r.segments)
      spread(s.begin_us, s.end_us, t0, dt, plot_w, [&](int c, double v) {
        cover[static_cast<size_t>(c)][static_cast<int>(s.share)] += v;
      });
    for (int c = 0; c < plot_w; ++c) {
      const auto& cv = cover[static_cast<size_t>(c)];
      const int best = static_cast<int>(std::max_element(cv.begin(), cv.end()) - cv.begin());
      double total = 0;
      for (double v : cv) total += v;
      fill_cell(img, left + c, y, kRowH, static_cast<Share>(best), total >= 0.3 * dt);
    }
    std::vector<double> comm(static_cast<size_t>(plot_w), 0);
    for (const auto& [b, e] : r.comm_busy)
      spread(b, e, t0, dt, plot_w, [&](int c, double v) { comm[static_cast<size_t>(c)] += v; });
    for (int c = 0; c < plot_w; ++c)
      img.fill_rect(
          left + c, y + kRowH, 1, kStripH,
          comm[static_cast<size_t>(c)] >= 0.3 * dt ? share_color(Share::Comm) : kStripIdle);
    if (any_gpu) {
      std::vector<double> gpu(static_cast<size_t>(plot_w), 0);
      for (const auto& [b, e] : r.gpu_busy)
        spread(b, e, t0, dt, plot_w, [&](int c, double v) { gpu[static_cast<size_t>(c)] += v; });
      for (int c = 0; c < plot_w; ++c)
        img.fill_rect(
            left + c, y + kRowH + kStripH, 1, kStripH,
            gpu[static_cast<size_t>(c)] >= 0.3 * dt ? share_color(Share::Compute) : kStripIdle);
    }
    img.rect(left - 1, y - 1, plot_w + 2, kRowH + strips + 2, kFrame);
    for (const auto& [step, b] : r.steps) {
      if (b < t0 || b > t1) continue;
      const int x = left + static_cast<int>((b - t0) / dt);
      img.fill_rect(x, y - 1, 1, kRowH + strips + 2, kBlack);
    }
  }
  // Step numbers of the first row, where they fit.
  int last_x = -1000;
  for (const auto& [step, b] : ranks[0].steps) {
    if (b < t0 || b > t1) continue;
    const int x = left + static_cast<int>((b - t0) / dt);
    const std::string label = str_cat("step ", step);
    if (x - last_x < text_width(label) + 6) continue;
    draw_text(img, x + 2, top - 12, label, kBlack);
    last_x = x;
  }
  // Time axis in milliseconds from the window's start.
  const int ay = top + rows_h;
  img.fill_rect(left, ay, plot_w, 1, kBlack);
  const double span_ms = (t1 - t0) / 1000;
  for (double tick : nice_ticks(0, span_ms, 8)) {
    const int x = left + static_cast<int>(tick * 1000 / dt);
    if (x < left || x > left + plot_w) continue;
    img.fill_rect(x, ay, 1, 4, kBlack);
    const std::string label = tick_label(tick);
    draw_text(img, x - text_width(label) / 2, ay + 6, label, kBlack);
  }
  draw_text(img, left + plot_w - text_width("ms"), ay + 6 + kGlyphHeight, "ms", kBlack);
  // Legend.
  int lx = left;
  const int ly = ay + 8 + 2 * kGlyphHeight;
  auto key = [&](const std::string& text, Share s, bool strip) {
    if (strip) {
      img.fill_rect(lx, ly + 5, 12, 4, share_color(Share::Comm));
    } else {
      for (int c = 0; c < 12; ++c) fill_cell(img, lx + c, ly, 9, s, true);
      img.rect(lx, ly, 12, 9, kFrame);
    }
    draw_text(img, lx + 16, ly + 1, text, kBlack);
    lx += 16 + text_width(text) + 14;
  };
  key("compute", Share::Compute, false);
  key("optimizer", Share::Optimizer, false);
  key("data", Share::Data, false);
  key("other", Share::Other, false);
  key("exposed comm", Share::Comm, false);
  key("idle: bubble", Share::Bubble, false);
  key("idle: straggler", Share::Straggler, false);
  key("MPI threads busy", Share::Comm, true);
  if (any_gpu) {
    img.fill_rect(lx, ly + 5, 12, 4, share_color(Share::Compute));
    draw_text(img, lx + 16, ly + 1, "GPU busy", kBlack);
    lx += 16 + text_width("GPU busy") + 14;
  }
  img.fill_rect(lx, ly - 1, 1, 11, kBlack);
  draw_text(img, lx + 5, ly + 1, "step start", kBlack);
  return img;
}

}  // namespace trident::tools
