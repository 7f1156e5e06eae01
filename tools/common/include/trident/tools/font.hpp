// Text on an Image: a hand-drawn 5x7 bitmap font for printable ASCII (others draw as '?'),
// each glyph in a 6 x 9 cell, scaled by an integer factor.
#pragma once
#include <string>

#include "trident/tools/image.hpp"

namespace trident::tools {

constexpr int kGlyphAdvance = 6;  // pixels per character at scale 1
constexpr int kGlyphHeight = 9;   // line height at scale 1

// (x, y) is the top-left corner of the first cell.
void draw_text(Image& img, int x, int y, const std::string& text, Rgb color, int scale = 1);
int text_width(const std::string& text, int scale = 1);

}  // namespace trident::tools
