// PNG files for Image: 8-bit RGB (colour type 2), no interlace, every row filter 0, the image
// data zlib-compressed in one IDAT chunk, each chunk with its CRC-32 (zlib's crc32/compress2).
// decode_png reads back exactly that subset (tests check the writer with it).
#pragma once
#include <string>

#include "trident/tools/image.hpp"

namespace trident::tools {

std::string encode_png(const Image& img);
// Writes encode_png(img) to `path`; throws trident::Error naming the path when it cannot.
void write_png(const Image& img, const std::string& path);
// Throws trident::Error on a bad signature, a chunk whose CRC does not match, a truncated file,
// or anything outside the subset above.
Image decode_png(const std::string& bytes);

}  // namespace trident::tools
