// Line charts for trident-plot: axes with 1-2-5 ticks, series as polylines (or markers),
// a legend in the top-right corner.
#pragma once
#include <string>
#include <vector>

#include "trident/tools/image.hpp"

namespace trident::tools {

struct Series {
  std::string label;
  std::vector<double> x, y;
  Rgb color;
  bool markers = false;  // squares at the points instead of a line
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_y = false;
};

// Draws into the rectangle (x, y, w, h) of `img`. Throws trident::Error when no series has a
// finite point (or, with log_y, a positive one).
void draw_plot(Image& img, int x, int y, int w, int h, const std::vector<Series>& series,
               const PlotOptions& opts);

// Ticks for [lo, hi]: multiples of 1, 2 or 5 x 10^k, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// "1.5k", "0.25", "3e-05": short tick labels.
std::string tick_label(double v);

}  // namespace trident::tools
