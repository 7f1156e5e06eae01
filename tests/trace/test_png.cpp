// The tools' figures: PNG encoding checked by decoding (chunk CRCs, zlib stream, pixels), the
// bitmap font, plot ticks, and the timeline's colours at known times.
#include <zlib.h>

#include <catch2/catch.hpp>

#include "trident/core/error.hpp"
#include "trident/tools/font.hpp"
#include "trident/tools/plot.hpp"
#include "trident/tools/png.hpp"
#include "trident/tools/timeline.hpp"

using namespace trident;
using namespace trident::tools;

namespace {

uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

TEST_CASE("PNG: what is written decodes to the same pixels, every chunk CRC holds") {
  Image img(37, 11, {10, 20, 30});
  img.set(0, 0, {255, 0, 0});
  img.set(36, 10, {0, 255, 0});
  img.fill_rect(5, 3, 4, 2, {1, 2, 3});
  img.line(0, 10, 36, 0, {200, 100, 50});
  const std::string png = encode_png(img);
  REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: length 13, 37 x 11, depth 8, colour type 2.
  CHECK(be32(png, 8) == 13);
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(be32(png, 16) == 37);
  CHECK(be32(png, 20) == 11);
  CHECK(png[24] == 8);
  CHECK(png[25] == 2);
  // Walk the chunks and check each CRC with zlib's crc32.
  size_t at = 8;
  std::vector<std::string> types;
  while (at < png.size()) {
    const uint32_t len = be32(png, at);
    const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4);
    CHECK(be32(png, at + 8 + len) == static_cast<uint32_t>(crc));
    types.push_back(png.substr(at + 4, 4));
    at += 12 + len;
  }
  CHECK(at == png.size());
  CHECK(types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
  const Image back = decode_png(png);
  REQUIRE(back.width() == 37);
  REQUIRE(back.height() == 11);
  CHECK(back.pixels() == img.pixels());
  CHECK(back.at(0, 0) == Rgb{255, 0, 0});
  CHECK(back.at(6, 4) == Rgb{1, 2, 3});
}

TEST_CASE("PNG: corruption is detected") {
  Image img(8, 8);
  std::string png = encode_png(img);
  std::string bad = png;
  bad[8 + 12 + 13 + 8 + 2] ^= 0x40;  // a byte inside IDAT's data
  CHECK_THROWS_WITH(decode_png(bad), Catch::Contains("bad CRC"));
  CHECK_THROWS_WITH(decode_png(png.substr(0, png.size() - 20)), Catch::Contains("decode_png"));
  CHECK_THROWS_WITH(decode_png("GIF89a"), Catch::Contains("signature"));
}

TEST_CASE("font: glyphs set exactly their pixels") {
  Image img(40, 12);
  draw_text(img, 1, 1, "A", {0, 0, 0});
  int black = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x) black += img.at(x, y) == Rgb{0, 0, 0};
  CHECK(black == 18);                       // the '#' cells of 'A'
  CHECK(img.at(1 + 2, 1) == Rgb{0, 0, 0});  // apex
  CHECK(img.at(1, 1) == Rgb{255, 255, 255});
  CHECK(text_width("abc", 2) == 36);
}

TEST_CASE("plot ticks are 1-2-5 multiples covering the range") {
  CHECK(nice_ticks(0, 10, 5) == std::vector<double>{0, 2, 4, 6, 8, 10});
  const auto t = nice_ticks(0.13, 0.87, 4);
  REQUIRE(t.size() >= 3);
  CHECK(t.front() >= 0.13);
  CHECK(t.back() <= 0.87);
  CHECK(t[1] - t[0] == Approx(0.2));
  CHECK(tick_label(25000) == "25k");
  CHECK(tick_label(0.5) == "0.5");
  Image img(300, 200);
  CHECK_THROWS_WITH(draw_plot(img, 0, 0, 300, 200, {}, {"empty", "x", "y", false}),
                    Catch::Contains("no data points"));
}

TEST_CASE("timeline: compute red, communication green, idle white at their times") {
  RankTimeline r;
  r.rank = 0;
  r.label = "rank 0";
  r.segments = {{0, 500, Share::Compute}, {500, 750, Share::Comm}, {750, 1000, Share::Bubble}};
  r.steps = {{1, 0.0}};
  r.step_spans = {{0, 1000}};
  r.comm_busy = {{500, 750}};
  r.comm_bytes = {64};
  TimelineOptions opts;
  opts.width = 600;
  opts.title = "test";
  const Image img = draw_timeline({r, r}, opts);
  CHECK(img.width() == 600);
  // Find the plot's left edge: the first red pixel in the first row's middle line.
  const int y = 34 + 11;
  int left = -1;
  for (int x = 0; x < img.width() && left < 0; ++x)
    if (img.at(x, y) == share_color(Share::Compute)) left = x;
  REQUIRE(left > 0);
  int right = left;
  while (right + 1 < img.width() && img.at(right + 1, y) != Rgb{120, 120, 120}) ++right;
  const double w = right - left + 1;
  auto at = [&](double us) { return img.at(left + static_cast<int>(us / 1000 * w), y); };
  CHECK(at(250) == share_color(Share::Compute));
  CHECK(at(600) == share_color(Share::Comm));
  CHECK(at(900) == Rgb{255, 255, 255});
  // The MPI strip under the row is green only while the collective runs.
  CHECK(img.at(left + static_cast<int>(0.6 * w), 34 + 22 + 2) == share_color(Share::Comm));
  CHECK(img.at(left + static_cast<int>(0.2 * w), 34 + 22 + 2) != share_color(Share::Comm));
  // The same row drawn twice: the second rank's row holds the same colours.
  CHECK(img.at(left + static_cast<int>(0.25 * w), y + 35) == share_color(Share::Compute));
}
