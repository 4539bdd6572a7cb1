#include "detr/data/transforms.hpp"

#include "helpers.hpp"

using namespace detr;

namespace {
// A W x H image with two boxes (xyxy) and the matching target fields.
Sample make_sample(int64_t w, int64_t h, std::vector<float> boxes) {
  Sample s;
  s.image = Image::filled(h, w, {50, 60, 70});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) s.image.at(y, x)[0] = uint8_t((x * 3 + y) % 256);
  const int64_t n = int64_t(boxes.size() / 4);
  s.target.image_id = 77;
  s.target.boxes = Tensor<float>::from({n, 4}, boxes);
  s.target.labels = Tensor<int64_t>::arange(n);
  s.target.area = Tensor<float>::empty({n});
  for (int64_t i = 0; i < n; ++i)
    s.target.area.data()[i] = (boxes[i * 4 + 2] - boxes[i * 4]) * (boxes[i * 4 + 3] - boxes[i * 4 + 1]);
  s.target.iscrowd = Tensor<uint8_t>::zeros({n});
  s.target.orig_size = s.target.size = {h, w};
  return s;
}
}  // namespace

TEST_CASE("get_size_with_aspect_ratio follows the reference formula", "[transforms]") {
  using P = std::pair<int64_t, int64_t>;
  REQUIRE(get_size_with_aspect_ratio(640, 480, 800, 1333) == P{800, 1066});  // int(800*640/480)
  REQUIRE(get_size_with_aspect_ratio(480, 640, 800, 1333) == P{1066, 800});
  REQUIRE(get_size_with_aspect_ratio(500, 800, 500, 1333) == P{800, 500});   // already there
  // Long side would be 4000 > 1333: short side round(1333 * 200 / 1000) = 267, long side
  // int(267 * 1000 / 200) = 1335 (the reference's rounding lets it pass max_size slightly).
  REQUIRE(get_size_with_aspect_ratio(1000, 200, 800, 1333) == P{267, 1335});
  // round() is half to even: 5 * 1 / 2 = 2.5 -> 2; 7 * 1 / 2 = 3.5 -> 4.
  REQUIRE(get_size_with_aspect_ratio(2, 1, 10, 5) == P{2, 4});
  REQUIRE(get_size_with_aspect_ratio(2, 1, 10, 7) == P{4, 8});
  REQUIRE(get_size_with_aspect_ratio(300, 300, 200, std::nullopt) == P{200, 200});
}

TEST_CASE("hflip mirrors boxes and pixels; twice is the identity", "[transforms]") {
  Sample s = make_sample(40, 30, {2, 3, 12, 8, 30, 0, 40, 30});
  Sample f = hflip(s);
  REQUIRE(f.target.boxes.to_vector() == std::vector<float>{28, 3, 38, 8, 0, 0, 10, 30});
  REQUIRE(f.image.at(5, 0)[0] == s.image.at(5, 39)[0]);
  Sample ff = hflip(f);
  REQUIRE(ff.target.boxes.to_vector() == s.target.boxes.to_vector());
  REQUIRE(ff.image.pixels.to_vector() == s.image.pixels.to_vector());
  REQUIRE(s.target.boxes.at({0, 0}) == 2.f);  // input untouched
}

TEST_CASE("resize scales boxes by the realised ratios and area by their product", "[transforms]") {
  Sample s = make_sample(40, 30, {2, 3, 12, 8});
  Sample r = resize(s, 45, std::nullopt);  // shorter side 30 -> 45, width int(45*40/30) = 60
  REQUIRE(r.image.height() == 45);
  REQUIRE(r.image.width() == 60);
  REQUIRE(r.target.size == std::array<int64_t, 2>{45, 60});
  REQUIRE(r.target.boxes.to_vector() == std::vector<float>{3, 4.5f, 18, 12});
  REQUIRE(r.target.area.at({0}) == Approx(50 * 2.25));
}

TEST_CASE("crop shifts and clamps boxes, recomputes area, drops boxes outside", "[transforms]") {
  Sample s = make_sample(40, 30, {2, 3, 12, 8, 30, 20, 40, 30, 5, 5, 9, 9});
  Sample c = crop(s, 4, 6, 20, 20);  // region x in [6, 26), y in [4, 24)
  REQUIRE(c.image.width() == 20);
  REQUIRE(c.image.height() == 20);
  REQUIRE(c.image.at(0, 0)[0] == s.image.at(4, 6)[0]);
  REQUIRE(c.target.num_objects() == 2);  // the box at x >= 30 is gone
  REQUIRE(c.target.boxes.to_vector() == std::vector<float>{0, 0, 6, 4, 0, 1, 3, 5});
  REQUIRE(c.target.labels.to_vector() == std::vector<int64_t>{0, 2});
  REQUIRE(c.target.area.to_vector() == std::vector<float>{24, 12});
  REQUIRE_THROWS_WITH(crop(s, 0, 0, 0, 5), Catch::Contains("image id 77"));
}

TEST_CASE("normalize gives [3, H, W] ImageNet-normalised pixels and cxcywh boxes", "[transforms]") {
  Sample s = make_sample(40, 20, {0, 0, 40, 20, 10, 5, 20, 15});
  TensorSample t = normalize(s);
  REQUIRE(t.image.shape() == Shape{3, 20, 40});
  REQUIRE(t.target.normalized);
  REQUIRE(t.target.boxes.to_vector() == std::vector<float>{0.5f, 0.5f, 1, 1, 0.375f, 0.5f, 0.25f, 0.5f});
  REQUIRE(t.image.at({1, 0, 0}) == Approx((60 / 255.0 - 0.456) / 0.224).epsilon(1e-6));
  // Normalising twice is refused: the boxes would be wrong.
  Sample again{s.image, t.target};
  REQUIRE_THROWS_WITH(normalize(again), Catch::Contains("already normalised"));
}

TEST_CASE("train pipeline is seeded, keeps boxes valid, eval pipeline is fixed", "[transforms]") {
  DetrTransformConfig cfg;
  cfg.scales = {64, 80, 96};
  cfg.max_size = 160;
  cfg.crop_resize = {60, 70};
  cfg.crop_min = 32;
  cfg.crop_max = 60;
  cfg.eval_size = 80;
  DetrTransforms train(true, cfg), eval(false, cfg);
  Sample s = make_sample(120, 90, {2, 3, 50, 40, 60, 45, 119, 89, 30, 10, 90, 80});
  bool any_difference = false;
  std::vector<float> first;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    Rng a(seed), b(seed);
    TensorSample x = train(s, a), y = train(s, b);
    REQUIRE(x.image.to_vector() == y.image.to_vector());
    REQUIRE(x.target.boxes.to_vector() == y.target.boxes.to_vector());
    if (seed == 0) first = x.image.to_vector();
    else any_difference |= x.image.to_vector() != first;
    const int64_t H = x.image.dim(1), W = x.image.dim(2);
    REQUIRE(std::min(H, W) <= 96);
    REQUIRE(std::max(H, W) <= 160 + 2);
    for (int64_t i = 0; i < x.target.num_objects(); ++i) {
      const float* bx = x.target.boxes.data() + i * 4;  // cxcywh in [0, 1]
      REQUIRE(bx[2] > 0);
      REQUIRE(bx[3] > 0);
      REQUIRE(bx[0] - bx[2] / 2 >= -1e-6f);
      REQUIRE(bx[0] + bx[2] / 2 <= 1 + 1e-6f);
      REQUIRE(bx[1] + bx[3] / 2 <= 1 + 1e-6f);
    }
  }
  REQUIRE(any_difference);
  Rng r(5);
  TensorSample e = eval(s, r);
  REQUIRE(e.image.shape() == Shape{3, 80, 106});
  REQUIRE(e.target.num_objects() == 3);
}

TEST_CASE("transforms reject inconsistent targets and bad parameters", "[transforms][error]") {
  Sample s = make_sample(20, 20, {1, 1, 5, 5});
  s.target.area = Tensor<float>::zeros({2});
  REQUIRE_THROWS_WITH(hflip(s), Catch::Contains("image id 77") && Catch::Contains("disagree"));
  REQUIRE_THROWS(random_resize({}));
  REQUIRE_THROWS(random_size_crop(10, 5));
}
