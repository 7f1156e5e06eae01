#include "trident/tools/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "trident/core/error.hpp"
#include "trident/tools/font.hpp"

namespace trident::tools {

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> out;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return out;
}

std::string tick_label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%gM", v / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(buf, sizeof buf, "%gk", v / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}

void draw_plot(Image& img, int x, int y, int w, int h, const std::vector<Series>& series,
               const PlotOptions& opts) {
  const Rgb black{0, 0, 0}, grid{225, 225, 225};
  auto ty = [&](double v) { return opts.log_y ? std::log10(v) : v; };
  auto usable = [&](double vx, double vy) {
    return std::isfinite(vx) && std::isfinite(vy) && (!opts.log_y || vy > 0);
  };
  double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  bool any = false;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      const double vy = ty(s.y[i]);
      x0 = any ? std::min(x0, s.x[i]) : s.x[i];
      x1 = any ? std::max(x1, s.x[i]) : s.x[i];
      y0 = any ? std::min(y0, vy) : vy;
      y1 = any ? std::max(y1, vy) : vy;
      any = true;
    }
  }
  TRIDENT_CHECK(any, "plot '", opts.title, "': no data points to draw");
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (std::abs(y0) > 0 ? std::abs(y0) * 0.1 : 1);
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;

  const int left = x + 58, top = y + 20, pw = w - 58 - 10, ph = h - 20 - 34;
  auto px = [&](double v) {
    return left + static_cast<int>(std::lround((v - x0) / (x1 - x0) * pw));
  };
  auto py = [&](double v) {
    return top + ph - static_cast<int>(std::lround((v - y0) / (y1 - y0) * ph));
  };
  draw_text(img, left + (pw - text_width(opts.title)) / 2, y + 4, opts.title, black);

  std::vector<double> yt;
  if (opts.log_y && y1 - y0 < 1) {  // less than a decade: linear ticks, placed on the log axis
    for (double v : nice_ticks(std::pow(10.0, y0), std::pow(10.0, y1), 6))
      if (v > 0) yt.push_back(std::log10(v));
  } else if (opts.log_y) {
    for (double e = std::floor(y0); e <= std::ceil(y1); e += 1)
      for (double m : {1.0, 2.0, 5.0}) yt.push_back(std::log10(m) + e);
  } else {
    yt = nice_ticks(y0, y1, 6);
  }
  for (double v : yt) {
    if (v < y0 || v > y1) continue;
    img.fill_rect(left, py(v), pw, 1, grid);
    const std::string label = tick_label(opts.log_y ? std::pow(10.0, v) : v);
    draw_text(img, left - 6 - text_width(label), py(v) - 3, label, black);
  }
  for (double v : nice_ticks(x0, x1, 8)) {
    img.fill_rect(px(v), top, 1, ph, grid);
    img.fill_rect(px(v), top + ph, 1, 4, black);
    const std::string label = tick_label(v);
    draw_text(img, px(v) - text_width(label) / 2, top + ph + 7, label, black);
  }
  img.rect(left, top, pw + 1, ph + 1, black);
  draw_text(img, left + (pw - text_width(opts.x_label)) / 2, top + ph + 9 + kGlyphHeight,
            opts.x_label, black);
  draw_text(img, x + 2, y + 4, opts.y_label, black);

  for (const auto& s : series) {
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) {
        have_prev = false;
        continue;
      }
      const int cx = px(s.x[i]), cy = py(ty(s.y[i]));
      if (s.markers) {
        img.fill_rect(cx - 2, cy - 2, 5, 5, s.color);
      } else if (have_prev) {
        img.line(prev_x, prev_y, cx, cy, s.color, 2);
      }
      prev_x = cx;
      prev_y = cy;
      have_prev = true;
    }
  }
  // Legend, top right inside the frame.
  int widest = 0;
  for (const auto& s : series) widest = std::max(widest, text_width(s.label));
  int ly = top + 6;
  const int lx = left + pw - widest - 30;
  for (const auto& s : series) {
    if (s.label.empty()) continue;
    img.fill_rect(lx - 4, ly - 2, widest + 32, kGlyphHeight + 3, {255, 255, 255});
    if (s.markers) {
      img.fill_rect(lx + 5, ly + 1, 5, 5, s.color);
    } else {
      img.fill_rect(lx, ly + 3, 16, 2, s.color);
    }
    draw_text(img, lx + 22, ly, s.label, black);
    ly += kGlyphHeight + 3;
  }
}

}  // namespace trident::tools
