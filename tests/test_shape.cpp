#include "detr/ops/elementwise.hpp"
#include "detr/ops/shape.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("reshape is a view with -1 inference", "[shape]") {
  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto y = reshape(x, {4, -1});
  REQUIRE(y.shape() == Shape{4, 6});
  REQUIRE(y.value().shares_storage_with(x.value()));
  REQUIRE_THROWS_WITH(reshape(x, {5, -1}), Catch::Contains("[2, 3, 4]"));
}

TEST_CASE("permute and transpose move elements as torch does", "[shape]") {
  Var<float> x(Tensor<float>::arange(24).reshape({2, 3, 4}));
  auto p = permute(x, {2, 0, 1}).value();
  REQUIRE(p.shape() == Shape{4, 2, 3});
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c) REQUIRE(p.at({c, a, b}) == x.value().at({a, b, c}));
  auto t = transpose(x, 0, 1).value();  // innermost dim kept: run copies
  REQUIRE(t.shape() == Shape{3, 2, 4});
  REQUIRE(t.at({2, 1, 3}) == x.value().at({1, 2, 3}));
  REQUIRE_THROWS_WITH(permute(x, {0, 0, 1}), Catch::Contains("repeated"));
}

TEST_CASE("reshape / permute / transpose gradcheck", "[shape][gradcheck]") {
  auto x = randn({2, 3, 4}, 3);
  REQUIRE_GRADCHECK([](const V& v) { return reshape(v[0], {3, 8}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return permute(v[0], {1, 2, 0}); }, {x});
  REQUIRE_GRADCHECK([](const V& v) { return transpose(v[0], -1, 0) * 2.0; }, {x});
}
