#include "detr/ops/elementwise.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::rand_uniform;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("broadcasting binary ops: forward values", "[elementwise]") {
  Var<float> a(Tensor<float>::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<float> b(Tensor<float>::from({3}, {10, 20, 30}));
  Var<float> c(Tensor<float>::from({2, 1}, {2, 4}));
  auto s = (a + b).value();
  REQUIRE(s.shape() == Shape{2, 3});
  REQUIRE(s.at({1, 2}) == 36.0f);
  auto d = (a / c).value();
  REQUIRE(d.at({1, 0}) == 1.0f);
  REQUIRE((a - b).value().at({0, 1}) == -18.0f);
  REQUIRE((b * c).value().shape() == Shape{2, 3});
}

TEST_CASE("binary ops gradcheck with broadcasting", "[elementwise][gradcheck]") {
  auto a = randn({2, 3, 4}, 1), b = randn({3, 1}, 2), c = rand_uniform({4}, 3, 0.5, 2.0);
  REQUIRE_GRADCHECK([](const V& v) { return v[0] + v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] - v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] * v[1]; }, {a, b});
  REQUIRE_GRADCHECK([](const V& v) { return v[0] / v[1]; }, {a, c});
  REQUIRE_GRADCHECK([](const V& v) { return v[1] / v[0]; }, {c, a});
  REQUIRE_GRADCHECK([](const V& v) { return (v[0] * 2.5 + 1.0) / 4.0 - 3.0; }, {a});
  REQUIRE_GRADCHECK([](const V& v) { return 1.0 - v[0]; }, {a});
}

TEST_CASE("activations gradcheck", "[elementwise][gradcheck]") {
  auto x = randn({3, 5}, 7);
  // keep away from the kinks of relu / abs / clamp where finite differences are undefined
  for (int64_t i = 0; i < x.numel(); ++i)
    if (std::abs(x.data()[i]) < 1e-2) x.data()[i] = 0.5;
  REQUIRE_GRADCHECK([](const V& v) { return relu(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return gelu(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return sigmoid(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::tanh(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::exp(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return detr::abs(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return square(v[0]); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return clamp(v[0], -0.7, 0.9); }, {x});
  auto p = rand_uniform({3, 5}, 8, 0.1, 3.0);
  REQUIRE_GRADCHECK([](const V& v) { return detr::log(v[0]); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return detr::sqrt(v[0]); }, {p});
}

TEST_CASE("activation values match torch", "[elementwise]") {
  Var<double> x(Tensor<double>::from({4}, {-2.0, -0.5, 0.0, 1.5}));
  auto g = gelu(x).value();  // torch.nn.functional.gelu (exact)
  REQUIRE(g.at({0}) == Approx(-0.04550026389635842).epsilon(1e-12));
  REQUIRE(g.at({1}) == Approx(-0.15426876936299344).epsilon(1e-12));
  REQUIRE(g.at({3}) == Approx(1.399789198096713).epsilon(1e-12));
  REQUIRE(sigmoid(x).value().at({3}) == Approx(0.8175744761936437).epsilon(1e-12));
}

TEST_CASE("inverse_sigmoid clamps as the reference and inverts sigmoid", "[elementwise][gradcheck]") {
  Var<double> x(Tensor<double>::from({5}, {-0.5, 0.0, 0.3, 1.0, 2.0}));
  auto y = inverse_sigmoid(x).value();
  REQUIRE(y.at({0}) == Approx(std::log(1e-5)));  // clamp(0,1) then x1 clamped to eps
  REQUIRE(y.at({1}) == Approx(std::log(1e-5)));
  REQUIRE(y.at({2}) == Approx(std::log(0.3 / 0.7)));
  REQUIRE(y.at({3}) == Approx(-std::log(1e-5)));
  REQUIRE(y.at({4}) == Approx(-std::log(1e-5)));
  auto p = rand_uniform({6}, 3, 0.05, 0.95);
  REQUIRE_GRADCHECK([](const V& v) { return inverse_sigmoid(v[0]); }, {p});
  REQUIRE_GRADCHECK([](const V& v) { return inverse_sigmoid(sigmoid(v[0])); }, {randn({6}, 4)});
}
