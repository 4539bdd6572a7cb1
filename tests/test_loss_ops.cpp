#include "detr/ops/loss.hpp"
#include "detr/ops/reduce.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("cross_entropy: weighted mean as torch, gradcheck", "[loss][gradcheck]") {
  auto target = Tensor<int64_t>::from({4}, {0, 3, 3, 1});
  auto w = Tensor<double>::from({4}, {1, 1, 1, 0.1});
  Var<double> x(Tensor<double>::from({4, 4}, {1, 2, 3, 4, 0, 0, 0, 0, -1, 2, 0.5, 3, 2, 2, 2, 2}));
  double want = 0, ws = 0;
  for (int i = 0; i < 4; ++i) {
    double m = 0, s = 0;
    for (int c = 0; c < 4; ++c) s += std::exp(x.value().at({i, c}));
    int64_t y = target.data()[i];
    m = -(x.value().at({i, y}) - std::log(s));
    want += w.data()[y] * m;
    ws += w.data()[y];
  }
  REQUIRE(cross_entropy(x, target, w).item() == Approx(want / ws).epsilon(1e-12));
  REQUIRE_GRADCHECK([&](const V& v) { return cross_entropy(v[0], target, w); }, {randn({4, 4}, 1)});
  REQUIRE_GRADCHECK([&](const V& v) { return cross_entropy(v[0], target); }, {randn({4, 4}, 2)});
  REQUIRE_THROWS_WITH(cross_entropy(x, Tensor<int64_t>::from({4}, {0, 4, 0, 0})), Catch::Contains("target 1 is 4"));
}

TEST_CASE("sigmoid_focal_loss values and gradcheck incl. confident and wrong logits", "[loss][gradcheck]") {
  auto t = Tensor<double>::from({2, 3}, {1, 0, 0, 0, 1, 1});
  Var<double> x(Tensor<double>::from({2, 3}, {0.3, -1.0, 2.0, 0.0, -3.0, 8.0}));
  auto l = sigmoid_focal_loss(x, t).value();
  double p = 1 / (1 + std::exp(-0.3));
  REQUIRE(l.at({0, 0}) == Approx(0.25 * (1 - p) * (1 - p) * -std::log(p)).epsilon(1e-12));
  double p2 = 1 / (1 + std::exp(-2.0));
  REQUIRE(l.at({0, 2}) == Approx(0.75 * p2 * p2 * -std::log(1 - p2)).epsilon(1e-12));
  REQUIRE_GRADCHECK([&](const V& v) { return sigmoid_focal_loss(v[0], t); }, {randn({2, 3}, 3, 3.0)});
  REQUIRE_GRADCHECK([&](const V& v) { return sigmoid_focal_loss(v[0], t, -1.0, 1.5); }, {randn({2, 3}, 4, 2.0)});
}
