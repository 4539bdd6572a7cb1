#pragma once
// Line charts of training curves (loss and mAP by epoch) as a PNG, drawn with the same
// primitives as eval/draw.hpp (filled rectangles, stb_easy_font text) so that a training run can
// be looked at without Python or a plotting library.
//
//   write_chart("chart.png", {{"train loss", {{"loss", epochs, losses}}},
//                             {"val AP", {{"AP", epochs, ap}, {"AP50", epochs, ap50}}}});
//
// Panels are stacked top to bottom and share nothing but the image width; each has its own
// axes with "nice" ticks (1, 2, 5 x 10^k) and a legend. Non-finite points are skipped (a line
// breaks there), so a metric that is only computed every few epochs plots as it is.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/data/image.hpp"
#include "detr/eval/draw.hpp"

namespace detr {

struct ChartSeries {
  std::string name;
  std::vector<double> x, y;  // [N] each
  std::array<uint8_t, 3> colour = label_colour(3);
};

struct ChartPanel {
  std::string title;
  std::vector<ChartSeries> series;
};

namespace internal {

// Ticks at a step of 1, 2 or 5 x 10^k (at least min_step), about `target` of them, from the
// last tick at or below lo to the first at or above hi.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5, double min_step = 0) {
  if (!(hi > lo)) return {lo};
  const double raw = std::max((hi - lo) / std::max(1, target), min_step);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9) * step;
  for (int64_t i = 0;; ++i) {
    const double t = first + double(i) * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;
  }
  return ticks;
}

inline std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A line `thickness` pixels wide from (x0, y0) to (x1, y1) (Bresenham with square pens).
inline void draw_line(Image& im, int64_t x0, int64_t y0, int64_t x1, int64_t y1, std::array<uint8_t, 3> rgb,
                      int thickness = 2) {
  const int64_t dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int64_t sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int64_t err = dx + dy;
  const int64_t lo = -(thickness - 1) / 2, hi = thickness / 2 + 1;
  for (;;) {
    fill_rect(im, x0 + lo, y0 + lo, x0 + hi, y0 + hi, rgb);
    if (x0 == x1 && y0 == y1) break;
    const int64_t e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

inline void draw_panel(Image& im, const ChartPanel& panel, int64_t top, int64_t height) {
  const std::array<uint8_t, 3> kAxis = {60, 60, 60}, kGrid = {225, 225, 225}, kText = {20, 20, 20};
  const int64_t W = im.width();
  // Data range over the finite points of every series.
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (size_t s = 0; s < panel.series.size(); ++s) {
    const auto& ser = panel.series[s];
    DETR_CHECK(ser.x.size() == ser.y.size(), "chart: panel '" << panel.title << "' series '" << ser.name
                                                               << "' has " << ser.x.size() << " x values and "
                                                               << ser.y.size() << " y values");
    for (size_t i = 0; i < ser.x.size(); ++i)
      if (std::isfinite(ser.x[i]) && std::isfinite(ser.y[i])) {
        xlo = std::min(xlo, ser.x[i]), xhi = std::max(xhi, ser.x[i]);
        ylo = std::min(ylo, ser.y[i]), yhi = std::max(yhi, ser.y[i]);
      }
  }
  const bool empty = !std::isfinite(xlo);
  bool integer_x = true;  // epochs: no ticks between them
  for (const auto& ser : panel.series)
    for (double x : ser.x) integer_x &= !std::isfinite(x) || x == std::floor(x);
  if (empty) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (xhi == xlo) xlo -= 1, xhi += 1;
  if (yhi == ylo) {  // a flat series: 0 (an AP before anything is found) spans [0, 1]
    const double pad = std::abs(ylo) * 0.1;
    if (ylo == 0) {
      yhi = 1;
    } else {
      ylo -= pad;
      yhi += pad;
    }
  }
  const auto xt = nice_ticks(xlo, xhi, 8, integer_x ? 1 : 0), yt = nice_ticks(ylo, yhi, 5);
  xlo = std::min(xlo, xt.front()), xhi = std::max(xhi, xt.back());
  ylo = std::min(ylo, yt.front()), yhi = std::max(yhi, yt.back());

  // Plot area: room on the left for y labels, above for the title, below for x labels.
  int64_t label_w = 0;
  for (double t : yt) label_w = std::max(label_w, text_size(tick_label(t))[0]);
  const int64_t left = 12 + label_w, right = W - 12, ptop = top + 22, pbottom = top + height - 22;
  DETR_CHECK(right - left >= 16 && pbottom - ptop >= 16,
             "chart: a panel of " << W << " x " << height << " pixels is too small to draw");
  auto px = [&](double x) { return left + int64_t(std::lround((x - xlo) / (xhi - xlo) * double(right - left))); };
  auto py = [&](double y) { return pbottom - int64_t(std::lround((y - ylo) / (yhi - ylo) * double(pbottom - ptop))); };

  draw_text(im, left, top + 6, panel.title + (empty ? " (no data yet)" : ""), kText);
  for (double t : yt) {
    const int64_t y = py(t);
    fill_rect(im, left, y, right + 1, y + 1, kGrid);
    const std::string s = tick_label(t);
    draw_text(im, left - 4 - text_size(s)[0], y - 3, s, kText);
  }
  for (double t : xt) {
    const int64_t x = px(t);
    fill_rect(im, x, ptop, x + 1, pbottom + 1, kGrid);
    const std::string s = tick_label(t);
    draw_text(im, x - text_size(s)[0] / 2, pbottom + 5, s, kText);
  }
  fill_rect(im, left, ptop, left + 1, pbottom + 1, kAxis);
  fill_rect(im, left, pbottom, right + 1, pbottom + 1, kAxis);

  for (const auto& ser : panel.series) {
    bool have_prev = false;
    int64_t qx = 0, qy = 0;
    for (size_t i = 0; i < ser.x.size(); ++i) {
      if (!(std::isfinite(ser.x[i]) && std::isfinite(ser.y[i]))) {
        have_prev = false;
        continue;
      }
      const int64_t x = px(ser.x[i]), y = py(ser.y[i]);
      if (have_prev) draw_line(im, qx, qy, x, y, ser.colour);
      fill_rect(im, x - 2, y - 2, x + 3, y + 3, ser.colour);  // a dot on every point
      qx = x, qy = y, have_prev = true;
    }
  }
  // Legend, top right: a colour swatch and the name of each series.
  int64_t lx = right - 6;
  for (auto it = panel.series.rbegin(); it != panel.series.rend(); ++it) {
    const int64_t tw = text_size(it->name)[0];
    lx -= tw + 18;
    fill_rect(im, lx, top + 7, lx + 10, top + 14, it->colour);
    draw_text(im, lx + 13, top + 6, it->name, kText);
  }
}

}  // namespace internal

// The panels drawn on a white image `width` wide, each `panel_height` high.
inline Image render_chart(const std::vector<ChartPanel>& panels, int64_t width = 640, int64_t panel_height = 240) {
  DETR_CHECK(!panels.empty(), "render_chart: no panels");
  DETR_CHECK(width >= 64 && panel_height >= 64,
             "render_chart: size " << width << " x " << panel_height << " per panel is too small (need >= 64 x 64)");
  Image im = Image::filled(panel_height * int64_t(panels.size()), width, {255, 255, 255});
  for (size_t p = 0; p < panels.size(); ++p) internal::draw_panel(im, panels[p], int64_t(p) * panel_height, panel_height);
  return im;
}

// render_chart written as a PNG.
inline void write_chart(const std::string& path, const std::vector<ChartPanel>& panels, int64_t width = 640,
                        int64_t panel_height = 240) {
  write_png(path, render_chart(panels, width, panel_height));
}

}  // namespace detr
