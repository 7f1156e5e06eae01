// An 8-bit RGB raster for the tools' figures: rows top to bottom, 3 bytes a pixel, row-major
// (pixel (x, y) at 3 (y w + x)). Drawing clips to the image.
#pragma once
#include <cstdint>
#include <vector>

namespace trident::tools {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& pixels() const { return pixels_; }

  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);
  void fill_rect(int x, int y, int w, int h, Rgb c);
  // Outline of the rectangle, one pixel wide.
  void rect(int x, int y, int w, int h, Rgb c);
  // Bresenham line, `thickness` pixels wide (a square brush).
  void line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
};

}  // namespace trident::tools
