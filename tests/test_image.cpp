#include "detr/data/image.hpp"

#include <stb_image_write.h>

#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
Image gradient_image(int64_t h, int64_t w) {
  Image im = Image::filled(h, w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = im.at(y, x);
      p[0] = uint8_t(x * 255 / std::max<int64_t>(w - 1, 1));
      p[1] = uint8_t(y * 255 / std::max<int64_t>(h - 1, 1));
      p[2] = uint8_t((x * 7 + y * 13) % 256);
    }
  return im;
}
}  // namespace

TEST_CASE("PNG write then decode gives back the pixels", "[image]") {
  test::TempDir dir;
  Image im = gradient_image(17, 23);
  write_png(dir / "a.png", im);
  Image back = read_image(dir / "a.png");
  REQUIRE(back.pixels.shape() == Shape{17, 23, 3});
  REQUIRE(back.pixels.to_vector() == im.pixels.to_vector());
}

TEST_CASE("grey PNG and JPEG decode to RGB", "[image]") {
  test::TempDir dir;
  std::vector<uint8_t> grey(9 * 5);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = uint8_t(i * 5);
  REQUIRE(stbi_write_png((dir / "g.png").c_str(), 5, 9, 1, grey.data(), 5));
  Image g = read_image(dir / "g.png");
  REQUIRE(g.pixels.shape() == Shape{9, 5, 3});
  for (int64_t y = 0; y < 9; ++y)
    for (int64_t x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) REQUIRE(g.at(y, x)[c] == grey[y * 5 + x]);

  // JPEG is lossy: a flat colour survives to within a few levels.
  Image flat = Image::filled(16, 24, {200, 40, 90});
  REQUIRE(stbi_write_jpg((dir / "f.jpg").c_str(), 24, 16, 3, flat.pixels.data(), 95));
  Image j = read_image(dir / "f.jpg");
  REQUIRE(j.pixels.shape() == Shape{16, 24, 3});
  for (int c = 0; c < 3; ++c) REQUIRE(std::abs(int(j.at(8, 12)[c]) - int(flat.at(8, 12)[c])) <= 4);
}

TEST_CASE("undecodable, empty and missing files give errors naming the file", "[image][error]") {
  test::TempDir dir;
  test::write_text(dir / "bad.png", "this is not an image at all");
  REQUIRE_THROWS_WITH(read_image(dir / "bad.png"), Catch::Contains("bad.png") &&
                                                       Catch::Contains("cannot decode"));
  test::write_text(dir / "empty.jpg", "");
  REQUIRE_THROWS_WITH(read_image(dir / "empty.jpg"), Catch::Contains("empty.jpg"));
  REQUIRE_THROWS_WITH(read_image(dir / "missing.png"), Catch::Contains("missing.png"));
  REQUIRE_THROWS_WITH(write_png(dir / "no/such/dir/out.png", Image::filled(2, 2)),
                      Catch::Contains("out.png"));
  Image bad{Tensor<uint8_t>::zeros({4, 4, 4})};
  REQUIRE_THROWS_WITH(encode_png(bad), Catch::Contains("[4, 4, 4]"));
}

TEST_CASE("resize keeps flat colours, averages when shrinking, hflip and crop", "[image]") {
  Image flat = Image::filled(10, 20, {10, 100, 250});
  Image r = resize(flat, 7, 33);
  REQUIRE(r.pixels.shape() == Shape{7, 33, 3});
  for (int64_t i = 0; i < r.pixels.numel(); i += 3) {
    REQUIRE(r.pixels.data()[i] == 10);
    REQUIRE(r.pixels.data()[i + 2] == 250);
  }
  // A 2x shrink of a 0/255 checkerboard is uniform grey (antialiased, as PIL), not aliased.
  Image checker = Image::filled(8, 8);
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 8; ++x) checker.at(y, x)[0] = ((x + y) % 2) ? 255 : 0;
  Image half = resize(checker, 4, 4);
  for (int64_t y = 1; y < 3; ++y)
    for (int64_t x = 1; x < 3; ++x) REQUIRE(std::abs(int(half.at(y, x)[0]) - 128) <= 1);

  Image g = gradient_image(5, 6);
  Image f = hflip(g);
  REQUIRE(f.at(2, 0)[0] == g.at(2, 5)[0]);
  REQUIRE(f.at(4, 1)[2] == g.at(4, 4)[2]);
  Image c = crop(g, 1, 2, 3, 6);  // runs past the right edge: zero padded
  REQUIRE(c.pixels.shape() == Shape{3, 6, 3});
  REQUIRE(c.at(0, 0)[1] == g.at(1, 2)[1]);
  REQUIRE(c.at(2, 3)[2] == g.at(3, 5)[2]);
  REQUIRE(c.at(2, 4)[0] == 0);
}

TEST_CASE("to_normalized_tensor is ToTensor + ImageNet Normalize, channels first", "[image]") {
  Image im = gradient_image(3, 4);
  auto t = to_normalized_tensor(im);
  REQUIRE(t.shape() == Shape{3, 3, 4});
  for (int c = 0; c < 3; ++c)
    REQUIRE(t.at({c, 2, 1}) ==
            Approx((im.at(2, 1)[c] / 255.0 - kImageNetMean[c]) / kImageNetStd[c]).epsilon(1e-6));
}

namespace {
// Restores the process-wide pixel limit when a test that changes it ends (pass or fail).
struct MaxPixelsGuard {
  int64_t saved = max_image_pixels();
  ~MaxPixelsGuard() { set_max_image_pixels(saved); }
};
}  // namespace

TEST_CASE("a header claiming 20000 x 20000 is refused before decoding", "[image][error]") {
  test::TempDir dir;
  // A 21-byte JPEG with only a frame header is enough for stb: at 100 x 60 it "decodes" (the
  // bomb is real); at 20000 x 20000 it would allocate and fill gigabytes.
  test::write_bytes(dir / "small.jpg", test::jpeg_claiming(100, 60));
  REQUIRE(read_image(dir / "small.jpg").pixels.shape() == Shape{60, 100, 3});

  const auto jpg = test::jpeg_claiming(20000, 20000), png = test::png_claiming(20000, 20000);
  REQUIRE(jpg.size() < 100);
  REQUIRE(png.size() < 100);
  test::write_bytes(dir / "bomb.jpg", jpg);
  test::write_bytes(dir / "bomb.png", png);
  for (const char* name : {"bomb.jpg", "bomb.png"}) {
    const std::string path = dir / name;
    auto bytes = read_file_bytes(path);
    ImageHeader hd = decode_image_header(bytes.data(), bytes.size(), path);
    REQUIRE(hd.width == 20000);
    REQUIRE(hd.height == 20000);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_THROWS_WITH(read_image(path),
                        Catch::Contains(name) && Catch::Contains("20000 x 20000") &&
                            Catch::Contains("limit of 178956970") &&
                            Catch::Contains("set_max_image_pixels"));
    // Refused from the header: no time (or memory) spent on the 400M pixels.
    REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  }
  REQUIRE(kDefaultMaxImagePixels == 2 * 89478485);  // PIL's DecompressionBombError threshold
}

TEST_CASE("a pixel limit, per call or process-wide, refuses a normal image", "[image][error]") {
  test::TempDir dir;
  write_png(dir / "a.png", gradient_image(17, 23));  // 391 pixels
  REQUIRE_THROWS_WITH(read_image(dir / "a.png", DecodeLimits{390}),
                      Catch::Contains("a.png") && Catch::Contains("23 x 17") &&
                          Catch::Contains("limit of 390"));
  REQUIRE(read_image(dir / "a.png", DecodeLimits{391}).pixels.shape() == Shape{17, 23, 3});
  REQUIRE_THROWS_WITH(read_image(dir / "a.png", DecodeLimits{0}),
                      Catch::Contains("must be positive"));
  {
    MaxPixelsGuard guard;
    set_max_image_pixels(100);
    REQUIRE(max_image_pixels() == 100);
    REQUIRE(DecodeLimits{}.max_pixels == 100);
    REQUIRE_THROWS_WITH(read_image(dir / "a.png"),
                        Catch::Contains("a.png") && Catch::Contains("limit of 100"));
    REQUIRE(read_image(dir / "a.png", DecodeLimits{1000}).height() == 17);  // per call wins
    REQUIRE_THROWS_WITH(set_max_image_pixels(-1), Catch::Contains("must be positive"));
  }
  REQUIRE(max_image_pixels() == kDefaultMaxImagePixels);
  REQUIRE(read_image(dir / "a.png").width() == 23);
}

TEST_CASE("an unreadable header is an error naming the file", "[image][error]") {
  std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  REQUIRE_THROWS_WITH(decode_image_header(junk.data(), junk.size(), "junk.jpg"),
                      Catch::Contains("junk.jpg") && Catch::Contains("header is unreadable"));
  REQUIRE_THROWS_WITH(decode_image(junk.data(), junk.size(), "junk.jpg"),
                      Catch::Contains("junk.jpg") && Catch::Contains("cannot decode"));
}
