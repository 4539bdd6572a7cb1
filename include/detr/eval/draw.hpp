#pragma once
// Drawing detections: boxes, class names and scores onto an Image, saved as PNG.
//
// The font is stb_easy_font (Debian libstb-dev, header-only, public domain): ASCII glyphs
// about 6 x 7 px built from axis-aligned quads, which we rasterise at an integer scale. It
// needs no font file and no GPU, which is all an inspection tool wants.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/data/image.hpp"

namespace detr {

struct DrawnDetection {
  std::array<float, 4> box{};  // x0, y0, x1, y1 in pixels of the image drawn on
  int64_t label = 0;           // index into the class names
  float score = 1;
};

// A fixed palette of 20 well-separated colours; label k gets colour k mod 20.
inline std::array<uint8_t, 3> label_colour(int64_t label) {
  static const uint8_t kPalette[20][3] = {
      {230, 25, 75},  {60, 180, 75},   {255, 225, 25}, {0, 130, 200},  {245, 130, 48},
      {145, 30, 180}, {70, 240, 240},  {240, 50, 230}, {210, 245, 60}, {250, 190, 212},
      {0, 128, 128},  {220, 190, 255}, {170, 110, 40}, {255, 250, 200}, {128, 0, 0},
      {170, 255, 195}, {128, 128, 0},  {255, 215, 180}, {0, 0, 128},   {128, 128, 128}};
  const auto& c = kPalette[((label % 20) + 20) % 20];
  return {c[0], c[1], c[2]};
}

// Fill [x0, x1) x [y0, y1), clipped to the image.
inline void fill_rect(Image& im, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                      std::array<uint8_t, 3> rgb) {
  x0 = std::max<int64_t>(x0, 0), y0 = std::max<int64_t>(y0, 0);
  x1 = std::min(x1, im.width()), y1 = std::min(y1, im.height());
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) std::copy_n(rgb.data(), 3, im.at(y, x));
}

// Outline of the box, `thickness` pixels inside its edges.
inline void draw_rect(Image& im, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                      std::array<uint8_t, 3> rgb, int thickness = 2) {
  fill_rect(im, x0, y0, x1 + 1, y0 + thickness, rgb);
  fill_rect(im, x0, y1 + 1 - thickness, x1 + 1, y1 + 1, rgb);
  fill_rect(im, x0, y0, x0 + thickness, y1 + 1, rgb);
  fill_rect(im, x1 + 1 - thickness, y0, x1 + 1, y1 + 1, rgb);
}

// Size in pixels of `text` at `scale`: (width, height).
inline std::array<int64_t, 2> text_size(const std::string& text, int scale = 1) {
  std::string t = text;
  return {int64_t(stb_easy_font_width(t.data())) * scale,
          int64_t(stb_easy_font_height(t.data())) * scale};
}

// Text with its top-left corner at (x, y).
inline void draw_text(Image& im, int64_t x, int64_t y, const std::string& text,
                      std::array<uint8_t, 3> rgb, int scale = 1) {
  DETR_CHECK(scale >= 1, "draw_text: scale must be >= 1, got " << scale);
  std::string t = text;
  // A quad is 4 vertices of 16 bytes; a glyph has up to 11 quads ('X'), so 16 per glyph leave
  // room. stb drops the quads that do not fit (a 6-quad '0' alone lost its right stroke when
  // this was stb's "about 270 bytes per character").
  std::vector<char> vbuf(t.size() * 16 * 64 + 64);
  int quads = stb_easy_font_print(0, 0, t.data(), nullptr, vbuf.data(), int(vbuf.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(vbuf.data() + q * 64);       // vertex 0
    const float* v2 = reinterpret_cast<const float*>(vbuf.data() + q * 64 + 32);  // vertex 2
    fill_rect(im, x + int64_t(std::lround(v0[0] * scale)), y + int64_t(std::lround(v0[1] * scale)),
              x + int64_t(std::lround(v2[0] * scale)), y + int64_t(std::lround(v2[1] * scale)), rgb);
  }
}

// A copy of `image` with every detection whose score >= min_score drawn as a coloured box with
// a "name score" tag above it (inside the box when there is no room above).
inline Image draw_detections(const Image& image, const std::vector<DrawnDetection>& dets,
                             const std::vector<std::string>& class_names, float min_score = 0,
                             int scale = 1) {
  Image out{image.pixels.clone()};
  for (size_t i = 0; i < dets.size(); ++i) {
    const auto& d = dets[i];
    DETR_CHECK(d.label >= 0 && d.label < int64_t(class_names.size()),
               "draw_detections: detection " << i << " has label " << d.label << ", expected [0, "
                                             << class_names.size() << ")");
    for (float v : d.box)
      DETR_CHECK(std::isfinite(v), "draw_detections: detection " << i << " has a non-finite box");
    DETR_CHECK(std::isfinite(d.score), "draw_detections: detection " << i
                                                                     << " has a non-finite score");
    if (d.score < min_score) continue;
    const auto rgb = label_colour(d.label);
    const int64_t x0 = std::lround(d.box[0]), y0 = std::lround(d.box[1]);
    const int64_t x1 = std::lround(d.box[2]) - 1, y1 = std::lround(d.box[3]) - 1;
    draw_rect(out, x0, y0, x1, y1, rgb, scale);
    char buf[16];
    std::snprintf(buf, sizeof buf, " %.2f", double(d.score));
    const std::string tag = class_names[size_t(d.label)] + buf;
    auto [tw, th] = text_size(tag, scale);
    const int64_t ty = y0 - th - 2 >= 0 ? y0 - th - 2 : y0 + scale;
    fill_rect(out, x0, ty, x0 + tw + 2, ty + th + 2, rgb);
    const bool dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 128;
    draw_text(out, x0 + 1, ty + 1, tag, dark ? std::array<uint8_t, 3>{255, 255, 255}
                                             : std::array<uint8_t, 3>{0, 0, 0}, scale);
  }
  return out;
}

}  // namespace detr
