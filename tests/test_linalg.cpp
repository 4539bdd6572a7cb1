#include "detr/ops/linalg.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("matmul forward against a naive loop", "[linalg]") {
  auto a = randn({2, 3, 4}, 1), b = randn({4, 5}, 2);
  auto c = matmul(Var<double>(a), Var<double>(b)).value();
  REQUIRE(c.shape() == Shape{2, 3, 5});
  for (int i = 0; i < 2; ++i)
    for (int m = 0; m < 3; ++m)
      for (int n = 0; n < 5; ++n) {
        double s = 0;
        for (int k = 0; k < 4; ++k) s += a.at({i, m, k}) * b.at({k, n});
        REQUIRE(c.at({i, m, n}) == Approx(s).epsilon(1e-12));
      }
}

TEST_CASE("matmul / batched / transposed / linear gradcheck", "[linalg][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return matmul(v[0], v[1]); }, {randn({2, 3, 4}, 1), randn({4, 5}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul(v[0], v[1]); }, {randn({2, 2, 3, 4}, 3), randn({2, 2, 4, 5}, 4)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul_nt(v[0], v[1]); }, {randn({3, 4}, 5), randn({6, 4}, 6)});
  REQUIRE_GRADCHECK([](const V& v) { return matmul_nt(v[0], v[1]); }, {randn({2, 3, 4}, 7), randn({2, 6, 4}, 8)});
  REQUIRE_GRADCHECK([](const V& v) { return linear(v[0], v[1], v[2]); },
                    {randn({2, 3, 4}, 9), randn({5, 4}, 10), randn({5}, 11)});
  REQUIRE_GRADCHECK([](const V& v) { return linear(v[0], v[1]); }, {randn({3, 4}, 12), randn({2, 4}, 13)});
}

TEST_CASE("matmul shape errors", "[linalg]") {
  Var<float> a(Tensor<float>::zeros({2, 3, 4})), b(Tensor<float>::zeros({3, 4, 5}));
  REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("batch dimensions differ"));
  Var<float> w(Tensor<float>::zeros({5, 3}));
  REQUIRE_THROWS_WITH(linear(a, w), Catch::Contains("in_features 3"));
}
