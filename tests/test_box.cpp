#include "detr/ops/box.hpp"
#include "helpers.hpp"

using namespace detr;
using V = std::vector<Var<double>>;

namespace {
// N random valid boxes in xyxy with distinct coordinates (no ties between the two sets).
Tensor<double> random_xyxy(int64_t n, uint64_t seed) {
  Rng rng(seed);
  auto t = Tensor<double>::empty({n, 4});
  for (int64_t i = 0; i < n; ++i) {
    double cx = rng.uniform(0.2, 0.8), cy = rng.uniform(0.2, 0.8), w = rng.uniform(0.05, 0.5), h = rng.uniform(0.05, 0.5);
    t.at({i, 0}) = cx - w / 2, t.at({i, 1}) = cy - h / 2, t.at({i, 2}) = cx + w / 2, t.at({i, 3}) = cy + h / 2;
  }
  return t;
}
}  // namespace

TEST_CASE("box format conversions invert each other, with gradients", "[box][gradcheck]") {
  auto b = random_xyxy(5, 1);
  auto back = box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(Var<double>(b))).value();
  REQUIRE_ALLCLOSE(back, b, 1e-14, 1e-14);
  REQUIRE_GRADCHECK([](const V& v) { return box_cxcywh_to_xyxy(v[0]); }, {detr::test::randn({2, 3, 4}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return box_xyxy_to_cxcywh(v[0]); }, {detr::test::randn({3, 4}, 3)});
}

TEST_CASE("generalized IoU values", "[box]") {
  auto a = Tensor<double>::from({3, 4}, {0, 0, 2, 2, 0, 0, 1, 1, 3, 3, 4, 4});
  auto b = Tensor<double>::from({2, 4}, {0, 0, 2, 2, 1, 1, 3, 3});
  Tensor<double> iou;
  auto g = generalized_box_iou(a, b, "a", "b", &iou);
  REQUIRE(g.at({0, 0}) == Approx(1.0));
  REQUIRE(iou.at({0, 1}) == Approx(1.0 / 7.0));                   // inter 1, union 7
  REQUIRE(g.at({0, 1}) == Approx(1.0 / 7.0 - (9.0 - 7.0) / 9.0));  // enclose 3x3
  REQUIRE(iou.at({1, 0}) == Approx(0.25));
  REQUIRE(g.at({2, 0}) == Approx(0.0 - (16.0 - 5.0) / 16.0));      // disjoint
  auto pairs = generalized_box_iou_pairs(Var<double>(a.slice0(0, 2)), Var<double>(b)).value();
  REQUIRE(pairs.at({0}) == Approx(g.at({0, 0})));
  REQUIRE(pairs.at({1}) == Approx(g.at({1, 1})));
}

TEST_CASE("element-wise GIoU gradcheck: overlapping, nested and disjoint pairs", "[box][gradcheck]") {
  auto a = random_xyxy(40, 4), b = random_xyxy(40, 5);
  REQUIRE_GRADCHECK([](const V& v) { return generalized_box_iou_pairs(v[0], v[1]); }, {a, b});
  // through the cxcywh conversion, as the loss uses it
  REQUIRE_GRADCHECK([](const V& v) {
    return generalized_box_iou_pairs(box_cxcywh_to_xyxy(v[0]), box_cxcywh_to_xyxy(v[1]));
  }, {box_xyxy_to_cxcywh(Var<double>(a)).value(), box_xyxy_to_cxcywh(Var<double>(b)).value()});
}

TEST_CASE("degenerate boxes are errors naming the tensor and index", "[box]") {
  auto a = Tensor<double>::from({2, 4}, {0, 0, 1, 1, 0.5, 0, 0.4, 1});
  auto b = Tensor<double>::from({1, 4}, {0, 0, 1, 1});
  REQUIRE_THROWS_WITH(generalized_box_iou(a, b, "pred_boxes", "tgt"),
                      Catch::Contains("pred_boxes box 1") && Catch::Contains("degenerate"));
  auto n = Tensor<double>::from({1, 4}, {0, 0, NAN, 1});
  REQUIRE_THROWS_WITH(generalized_box_iou_pairs(Var<double>(n), Var<double>(b)), Catch::Contains("predicted boxes box 0"));
  REQUIRE_THROWS_WITH(box_area(Tensor<double>::zeros({2, 3})), Catch::Contains("[..., 4]"));
}
