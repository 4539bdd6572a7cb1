#include "detr/eval/draw.hpp"

#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
bool is(const Image& im, int64_t y, int64_t x, std::array<uint8_t, 3> rgb) {
  return std::equal(rgb.begin(), rgb.end(), im.at(y, x));
}
}  // namespace

TEST_CASE("draw_rect outlines the box and leaves its inside alone", "[draw]") {
  Image im = Image::filled(40, 50, {10, 20, 30});
  draw_rect(im, 5, 6, 30, 25, {255, 0, 0}, 2);
  REQUIRE(is(im, 6, 5, {255, 0, 0}));
  REQUIRE(is(im, 25, 30, {255, 0, 0}));
  REQUIRE(is(im, 7, 20, {255, 0, 0}));   // second row of the top edge
  REQUIRE(is(im, 15, 15, {10, 20, 30}));  // inside
  REQUIRE(is(im, 5, 5, {10, 20, 30}));    // outside
  draw_rect(im, -10, -10, 100, 100, {0, 255, 0});  // clipped, no crash
  REQUIRE(is(im, 20, 20, {10, 20, 30}));
}

TEST_CASE("draw_text writes glyph pixels within its measured size", "[draw]") {
  Image im = Image::filled(30, 80, {0, 0, 0});
  auto [w, h] = text_size("Bag 0.91", 2);
  REQUIRE(w > 20);
  REQUIRE(h >= 10);
  draw_text(im, 3, 4, "Bag 0.91", {255, 255, 255}, 2);
  int64_t lit = 0, outside = 0;
  for (int64_t y = 0; y < 30; ++y)
    for (int64_t x = 0; x < 80; ++x)
      if (is(im, y, x, {255, 255, 255})) {
        ++lit;
        outside += !(x >= 3 && x < 3 + w && y >= 4 && y < 4 + h);
      }
  REQUIRE(lit > 50);
  REQUIRE(outside == 0);
  Image blank = Image::filled(30, 80, {0, 0, 0});
  draw_text(blank, 3, 4, " ", {255, 255, 255});
  REQUIRE(blank.pixels.to_vector() == Image::filled(30, 80, {0, 0, 0}).pixels.to_vector());
}

TEST_CASE("draw_text draws every quad of a short string", "[draw]") {
  // A lone '0' has 6 quads, more than a buffer of "about 270 bytes per character" holds.
  auto lit = [](const std::string& text) {
    Image im = Image::filled(12, 40, {0, 0, 0});
    draw_text(im, 1, 1, text, {255, 255, 255});
    int64_t n = 0;
    for (int64_t y = 0; y < 12; ++y)
      for (int64_t x = 0; x < 40; ++x) n += is(im, y, x, {255, 255, 255});
    return n;
  };
  REQUIRE(lit("0") > 0);
  REQUIRE(2 * lit("0") == lit("00"));
  REQUIRE(3 * lit("X") == lit("XXX"));
}

TEST_CASE("draw_detections draws boxes and tags above threshold, writes a PNG", "[draw]") {
  Image im = Image::filled(100, 120, {90, 90, 90});
  std::vector<std::string> names = {"Sneaker", "Bag"};
  std::vector<DrawnDetection> dets = {{{20, 30, 70, 80}, 1, 0.9f}, {{5, 5, 15, 15}, 0, 0.1f}};
  Image out = draw_detections(im, dets, names, 0.5f);
  const auto c = label_colour(1);
  REQUIRE(is(out, 79, 69, c));  // bottom-right corner of the kept box
  REQUIRE(is(out, 50, 20, c));
  REQUIRE(is(out, 10, 5, {90, 90, 90}));  // below threshold: not drawn
  REQUIRE(is(im, 79, 69, {90, 90, 90}));  // input untouched
  test::TempDir dir;
  write_png(dir / "det.png", out);
  REQUIRE(read_image(dir / "det.png").pixels.to_vector() == out.pixels.to_vector());
}

TEST_CASE("draw_detections rejects unknown labels and NaN boxes", "[draw][error]") {
  Image im = Image::filled(10, 10);
  REQUIRE_THROWS_WITH(draw_detections(im, {{{1, 1, 5, 5}, 2, 0.5f}}, {"a", "b"}),
                      Catch::Contains("label 2"));
  REQUIRE_THROWS_WITH(draw_detections(im, {{{1, NAN, 5, 5}, 0, 0.5f}}, {"a"}),
                      Catch::Contains("non-finite"));
}
