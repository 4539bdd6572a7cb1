#include "detr/ops/softmax.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("softmax and log_softmax values", "[softmax]") {
  Var<double> x(Tensor<double>::from({2, 3}, {1, 2, 3, -1000, 0, 1000}));
  auto s = softmax(x).value();
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  REQUIRE(s.at({0, 2}) == Approx(std::exp(3.0) / z).epsilon(1e-14));
  REQUIRE(s.at({1, 2}) == Approx(1.0));  // max-subtracted: no overflow
  auto l = log_softmax(x).value();
  REQUIRE(l.at({0, 0}) == Approx(1.0 - std::log(z)).epsilon(1e-14));
  REQUIRE(l.at({1, 1}) == Approx(-1000.0));
}

TEST_CASE("a fully masked softmax row is zeros, not NaN", "[softmax]") {
  const double inf = std::numeric_limits<double>::infinity();
  Var<double> x(Tensor<double>::from({2, 2}, {-inf, -inf, 0, -inf}));
  auto s = softmax(x).value();
  REQUIRE(s.at({0, 0}) == 0.0);
  REQUIRE(s.at({0, 1}) == 0.0);
  REQUIRE(s.at({1, 0}) == 1.0);
  REQUIRE(s.at({1, 1}) == 0.0);
}

TEST_CASE("softmax / log_softmax gradcheck", "[softmax][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return softmax(v[0]); }, {randn({3, 4, 5}, 1, 2.0)});
  REQUIRE_GRADCHECK([](const V& v) { return log_softmax(v[0]); }, {randn({3, 4, 5}, 2, 2.0)});
  REQUIRE_GRADCHECK([](const V& v) { return softmax(v[0]); }, {randn({1}, 3)});
}
