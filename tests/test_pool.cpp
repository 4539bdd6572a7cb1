#include <limits>

#include "detr/io/safetensors.hpp"
#include "detr/ops/pool.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("max_pool2d forward values, padding as -inf", "[pool]") {
  // 1x1x3x3 with 2x2 windows, stride 1, padding 1: corner windows see one real value each.
  Var<float> x(Tensor<float>::from({1, 1, 3, 3}, {1, -5, 3, -4, 5, -6, 7, -8, -9}));
  auto y = max_pool2d(x, 2, 1, 1).value();
  REQUIRE(y.shape() == Shape{1, 1, 4, 4});
  std::vector<float> want{1, 1, 3, 3, 1, 5, 5, 3, 7, 7, 5, -6, 7, 7, -8, -9};
  REQUIRE(y.to_vector() == want);
  // stride defaults to the kernel; [C, H, W] inputs work too
  auto z = max_pool2d(Var<float>(Tensor<float>::arange(16).reshape({1, 4, 4})), 2).value();
  REQUIRE(z.shape() == Shape{1, 2, 2});
  REQUIRE(z.to_vector() == std::vector<float>{5, 7, 13, 15});
}

TEST_CASE("max_pool2d gradcheck", "[pool][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return max_pool2d(v[0], 3, 2, 1); }, {randn({2, 3, 7, 6}, 1)});
  REQUIRE_GRADCHECK([](const V& v) { return max_pool2d(v[0], 2); }, {randn({1, 2, 4, 6}, 2)});
  REQUIRE_GRADCHECK([](const V& v) { return max_pool2d(v[0], {3, 2}, {1, 2}, {1, 0}); }, {randn({2, 1, 5, 5}, 3)});
  REQUIRE_GRADCHECK([](const V& v) { return max_pool2d(v[0], 3, 3); }, {randn({1, 1, 3, 3}, 4)});  // one window
}

TEST_CASE("max_pool2d: ties go to the first maximum, NaN propagates, -inf windows", "[pool]") {
  Var<double> x(Tensor<double>::full({1, 1, 2, 2}, 2.0), true);
  auto y = max_pool2d(x, 2);
  y.backward(Tensor<double>::ones({1, 1, 1, 1}));
  REQUIRE(x.grad().to_vector() == std::vector<double>{1, 0, 0, 0});

  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Var<float> xn(Tensor<float>::from({1, 1, 2, 2}, {1, nan, 3, 2}), true);
  auto yn = max_pool2d(xn, 2);
  REQUIRE(std::isnan(yn.item()));
  yn.backward(Tensor<float>::ones({1, 1, 1, 1}));
  REQUIRE(xn.grad().at({0, 0, 0, 1}) == 1.0f);

  Var<float> xi(Tensor<float>::full({1, 1, 2, 2}, -inf), true);
  auto yi = max_pool2d(xi, 3, 1, 1);
  REQUIRE(yi.value().at({0, 0, 0, 0}) == -inf);
  yi.backward(Tensor<float>::ones({1, 1, 2, 2}));
  REQUIRE(xi.grad().to_vector() == std::vector<float>{4, 0, 0, 0});  // every window's first real input
}

TEST_CASE("max_pool2d matches torch (values and gradients)", "[pool][parity]") {
  auto f = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/vision_ops.safetensors");
  struct P {
    const char* name;
    Size2 k, s, p;
  };
  for (const P& c : {P{"pool", 3, 2, 1}, P{"pool_ties", 3, 2, 1}, P{"pool_k2", 2, {2, 3}, 0}}) {
    std::string n = c.name;
    INFO(n);
    Var<float> x(f.get<float>(n + ".x"), true);
    auto y = max_pool2d(x, c.k, c.s, c.p);
    y.backward(f.get<float>(n + ".gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>(n + ".out"), 0.0, 0.0);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>(n + ".gx"), 1e-6, 1e-6);
  }
}

TEST_CASE("max_pool2d errors", "[pool]") {
  Var<float> x(Tensor<float>::zeros({1, 2, 3, 3}));
  REQUIRE_THROWS_WITH(max_pool2d(x, 3, 1, 2), Catch::Contains("padding (2, 2) must be at most half the kernel (3, 3)"));
  REQUIRE_THROWS_WITH(max_pool2d(x, 4), Catch::Contains("input [1, 2, 3, 3] padded by (0, 0) is smaller than the kernel (4, 4)"));
  REQUIRE_THROWS_WITH(max_pool2d(Var<float>(Tensor<float>::zeros({3, 3})), 2), Catch::Contains("got [3, 3]"));
  REQUIRE_THROWS_WITH(max_pool2d(x, 0), Catch::Contains("kernel size must be positive"));
}
