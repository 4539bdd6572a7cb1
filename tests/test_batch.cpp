#include "detr/data/batch.hpp"

#include "helpers.hpp"

using namespace detr;

namespace {
TensorSample sample(int64_t h, int64_t w, float base, int64_t id) {
  TensorSample s;
  s.image = Tensor<float>::empty({3, h, w});
  for (int64_t i = 0; i < s.image.numel(); ++i) s.image.data()[i] = base + float(i);
  s.target.image_id = id;
  s.target.size = {h, w};
  return s;
}
}  // namespace

TEST_CASE("collate pads to the largest H and W, mask true on padding", "[batch]") {
  std::vector<TensorSample> ss = {sample(4, 7, 0.f, 1), sample(6, 3, 1000.f, 2)};
  Batch b = collate(ss);
  REQUIRE(b.images.shape() == Shape{2, 3, 6, 7});
  REQUIRE(b.mask.shape() == Shape{2, 6, 7});
  REQUIRE(b.size() == 2);
  REQUIRE(b.targets[1].image_id == 2);
  for (int64_t n = 0; n < 2; ++n) {
    const auto& im = ss[n].image;
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 7; ++x) {
        bool inside = y < im.dim(1) && x < im.dim(2);
        REQUIRE(b.mask.at({n, y, x}) == (inside ? 0 : 1));
        for (int64_t c = 0; c < 3; ++c)
          REQUIRE(b.images.at({n, c, y, x}) == (inside ? im.at({c, y, x}) : 0.f));
      }
  }
}

TEST_CASE("collate rejects bad shapes, empty lists and NaN pixels", "[batch][error]") {
  REQUIRE_THROWS_WITH(collate({}), Catch::Contains("empty"));
  auto bad = sample(4, 4, 0, 5);
  bad.image = bad.image.reshape({4, 3, 4});
  REQUIRE_THROWS_WITH(collate({sample(2, 2, 0, 1), bad}),
                      Catch::Contains("image id 5") && Catch::Contains("[4, 3, 4]"));
  auto nan = sample(3, 3, 0, 8);
  nan.image.at({1, 2, 0}) = NAN;
  REQUIRE_THROWS_WITH(collate({nan}), Catch::Contains("image id 8") && Catch::Contains("non-finite"));
}

TEST_CASE("downsample_mask is nearest interpolation as F.interpolate", "[batch]") {
  // Reference values: F.interpolate(m[None].float(), size=(3, 4)).bool() for m = (x >= 5) on
  // a 1 x 7 x 10 mask: source columns floor(x * 10 / 4) = 0, 2, 5, 7; rows floor(y * 7/3).
  auto m = Tensor<uint8_t>::zeros({1, 7, 10});
  for (int64_t y = 0; y < 7; ++y)
    for (int64_t x = 0; x < 10; ++x) m.at({0, y, x}) = (x >= 5 || y == 4) ? 1 : 0;
  auto d = downsample_mask(m, 3, 4);
  REQUIRE(d.shape() == Shape{1, 3, 4});
  std::vector<uint8_t> expect = {0, 0, 1, 1,   // row 0 <- 0
                                 0, 0, 1, 1,   // row 1 <- floor(7/3) = 2
                                 1, 1, 1, 1};  // row 2 <- floor(14/3) = 4
  REQUIRE(d.to_vector() == expect);
  // Same size is the identity, 2x upsampling repeats.
  REQUIRE(downsample_mask(m, 7, 10).to_vector() == m.to_vector());
  auto up = downsample_mask(m, 14, 20);
  REQUIRE(up.at({0, 9, 11}) == m.at({0, 4, 5}));
  REQUIRE(up.at({0, 1, 1}) == m.at({0, 0, 0}));
  REQUIRE_THROWS(downsample_mask(m.reshape({7, 10}), 3, 4));
}

TEST_CASE("a padded batch's mask downsampled matches per-image valid regions", "[batch]") {
  Batch b = collate({sample(32, 64, 0, 1), sample(64, 32, 0, 2)});
  auto d = downsample_mask(b.mask, 2, 2);  // stride 32
  REQUIRE(d.to_vector() == std::vector<uint8_t>{0, 0, 1, 1, 0, 1, 0, 1});
}
