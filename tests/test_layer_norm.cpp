#include "detr/ops/layer_norm.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("layer_norm normalises each row", "[layer_norm]") {
  Var<double> x(randn({4, 6}, 1, 3.0)), w(Tensor<double>::ones({6})), b(Tensor<double>::zeros({6}));
  auto y = layer_norm(x, w, b, 0.0).value();
  for (int r = 0; r < 4; ++r) {
    double m = 0, s = 0;
    for (int j = 0; j < 6; ++j) m += y.at({r, j}) / 6;
    for (int j = 0; j < 6; ++j) s += (y.at({r, j}) - m) * (y.at({r, j}) - m) / 6;
    REQUIRE(m == Approx(0.0).margin(1e-12));
    REQUIRE(s == Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE("layer_norm gradcheck (small rows and a large parallel case)", "[layer_norm][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return layer_norm(v[0], v[1], v[2]); },
                    {randn({2, 3, 5}, 1), randn({5}, 2), randn({5}, 3)});
  // > 2^15 elements takes the multi-threaded path with per-thread weight-gradient partials
  GradcheckOptions opt;
  opt.wrt = {false, true, true};
  REQUIRE_GRADCHECK([](const V& v) { return layer_norm(v[0], v[1], v[2]); },
                    {randn({1100, 32}, 4), randn({32}, 5), randn({32}, 6)}, opt);
}

TEST_CASE("layer_norm shape errors", "[layer_norm]") {
  Var<float> x(Tensor<float>::zeros({2, 4})), w(Tensor<float>::ones({5}));
  REQUIRE_THROWS_WITH(layer_norm(x, w, w), Catch::Contains("[2, 4]") && Catch::Contains("[5]"));
}
