// The timeline figure: one row per rank over a time window, each pixel column coloured by the
// share that covers most of its time (compute red, optimizer orange, data blue, other purple,
// exposed communication green, idle white, straggler wait white with grey hatching), a thin
// strip under each row showing when its MPI threads ran collectives or transfers (green), and
// when the trace has device spans a second one for the GPU (red), a black tick at each step's
// start, step numbers on top, a time axis and a legend.
#pragma once
#include <string>
#include <vector>

#include "trident/tools/image.hpp"
#include "trident/tools/step_analysis.hpp"

namespace trident::tools {

struct TimelineOptions {
  int width = 1200;
  double begin_us = 0, end_us = 0;  // the window (end <= begin: every step of every rank)
  std::string title;
};

Rgb share_color(Share s);
Image draw_timeline(const std::vector<RankTimeline>& ranks, const TimelineOptions& opts);

}  // namespace trident::tools
