// PNG encoder and decoder for the subset in png.hpp. Layout: the 8-byte signature, then chunks
// (4-byte big-endian length, 4-byte type, data, CRC-32 of type + data): IHDR (width, height,
// bit depth 8, colour type 2, compression 0, filter 0, interlace 0), IDAT (zlib stream of the
// rows, each prefixed by its filter byte 0), IEND.
#include "trident/tools/png.hpp"

#include <zlib.h>

#include <cstring>

#include "trident/core/atomic_file.hpp"
#include "trident/core/error.hpp"

namespace trident::tools {

namespace {

const char kSignature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xff);
}

uint32_t get_u32(const std::string& in, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  return v;
}

uint32_t crc_of(const char* data, size_t n) {
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data), static_cast<uInt>(n)));
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, crc_of(body.data(), body.size()));
}

}  // namespace

std::string encode_png(const Image& img) {
  const size_t w = static_cast<size_t>(img.width()), h = static_cast<size_t>(img.height());
  std::string raw;
  raw.reserve(h * (1 + 3 * w));
  const auto& px = img.pixels();
  for (size_t y = 0; y < h; ++y) {
    raw += '\0';  // filter: none
    raw.append(reinterpret_cast<const char*>(px.data() + y * w * 3), w * 3);
  }
  uLongf zsize = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zsize, '\0');
  const int rc =
      compress2(reinterpret_cast<Bytef*>(&z[0]), &zsize, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 9);
  TRIDENT_CHECK(rc == Z_OK, "encode_png: zlib compress2 failed (", rc, ")");
  z.resize(zsize);

  std::string out(kSignature, 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(w));
  put_u32(ihdr, static_cast<uint32_t>(h));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const Image& img, const std::string& path) {
  const std::string bytes = encode_png(img);
  write_file_atomically(path, [&](std::ostream& o) {
    o.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

Image decode_png(const std::string& in) {
  TRIDENT_CHECK(in.size() >= 8 && std::memcmp(in.data(), kSignature, 8) == 0,
                "decode_png: not a PNG file (bad signature)");
  size_t at = 8;
  uint32_t width = 0, height = 0;
  std::string idat;
  bool ended = false;
  while (!ended) {
    TRIDENT_CHECK(at + 12 <= in.size(), "decode_png: truncated at byte ", at);
    const uint32_t len = get_u32(in, at);
    TRIDENT_CHECK(at + 12 + len <= in.size(), "decode_png: chunk at byte ", at,
                  " runs past the end of the file");
    const std::string type = in.substr(at + 4, 4);
    const uint32_t crc = get_u32(in, at + 8 + len);
    TRIDENT_CHECK(crc == crc_of(in.data() + at + 4, 4 + len), "decode_png: chunk ", type,
                  " at byte ", at, " has a bad CRC");
    const std::string data = in.substr(at + 8, len);
    if (type == "IHDR") {
      TRIDENT_CHECK(len == 13, "decode_png: IHDR of ", len, " bytes");
      width = get_u32(data, 0);
      height = get_u32(data, 4);
      TRIDENT_CHECK(data.substr(8, 5) == std::string("\x08\x02\x00\x00\x00", 5),
                    "decode_png: only 8-bit RGB, not interlaced, is supported");
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      ended = true;
    }
    at += 12 + len;
  }
  TRIDENT_CHECK(width > 0 && height > 0, "decode_png: no IHDR chunk");
  std::string raw(static_cast<size_t>(height) * (1 + 3 * static_cast<size_t>(width)), '\0');
  uLongf raw_size = static_cast<uLongf>(raw.size());
  const int rc =
      uncompress(reinterpret_cast<Bytef*>(&raw[0]), &raw_size,
                 reinterpret_cast<const Bytef*>(idat.data()), static_cast<uLong>(idat.size()));
  TRIDENT_CHECK(rc == Z_OK && raw_size == raw.size(),
                "decode_png: image data does not inflate "
                "to ",
                raw.size(), " bytes (zlib ", rc, ")");
  Image img(static_cast<int>(width), static_cast<int>(height));
  const size_t stride = 1 + 3 * static_cast<size_t>(width);
  for (uint32_t y = 0; y < height; ++y) {
    TRIDENT_CHECK(raw[y * stride] == 0, "decode_png: row ", y, " uses filter ",
                  static_cast<int>(raw[y * stride]), "; only filter 0 is supported");
    for (uint32_t x = 0; x < width; ++x) {
      const size_t i = y * stride + 1 + 3 * x;
      img.set(static_cast<int>(x), static_cast<int>(y),
              {static_cast<uint8_t>(raw[i]), static_cast<uint8_t>(raw[i + 1]),
               static_cast<uint8_t>(raw[i + 2])});
    }
  }
  return img;
}

}  // namespace trident::tools
