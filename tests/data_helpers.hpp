#pragma once
// Helpers for the data / eval tests: a scratch directory removed at scope exit, file writing,
// tiny image files whose header claims a huge size (decompression bombs, never decodable).
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace detr::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("detr_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  std::string str() const { return path.string(); }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline void put_u32_be(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

// A ~70-byte grey PNG whose IHDR says width x height, written by hand (not by encode_png, so
// that the tests do not depend on the code under test): signature, IHDR, an IDAT holding a few
// pixels, IEND. Grey because stb's PNG header reader itself refuses more than 2^30 bytes.
inline std::vector<uint8_t> png_claiming(uint32_t width, uint32_t height) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
    put_u32_be(out, uint32_t(data.size()));
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put_u32_be(out, uint32_t(crc32(0, out.data() + start, uInt(data.size() + 4))));
  };
  std::vector<uint8_t> ihdr;
  put_u32_be(ihdr, width);
  put_u32_be(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 0, 0, 0, 0});  // 8-bit grey, deflate, adaptive filter, no interlace
  chunk("IHDR", ihdr);
  const uint8_t row[8] = {0};  // a filter byte and 7 pixels, far fewer than the header says
  std::vector<uint8_t> z(compressBound(sizeof row));
  uLongf zlen = uLongf(z.size());
  compress(z.data(), &zlen, row, sizeof row);
  z.resize(zlen);
  chunk("IDAT", z);
  chunk("IEND", {});
  return out;
}

// A 21-byte baseline JPEG: SOI and a SOF0 frame header claiming width x height, 3 components,
// then EOI; no tables, no scan. This is the classic bomb: stb allocates the full frame.
inline std::vector<uint8_t> jpeg_claiming(uint16_t width, uint16_t height) {
  return {0xFF, 0xD8,                                  // SOI
          0xFF, 0xC0, 0x00, 17, 8,                     // SOF0, length 8 + 3 * 3, 8-bit
          uint8_t(height >> 8), uint8_t(height), uint8_t(width >> 8), uint8_t(width), 3,
          1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0,          // Y Cb Cr, 1x1 sampling, table 0
          0xFF, 0xD9};                                 // EOI
}

}  // namespace detr::test
