#include "detr/io/safetensors.hpp"
#include "detr/ops/interpolate.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("interpolate_nearest index rule: floor(dst * in / out)", "[interpolate]") {
  REQUIRE(internal::nearest_source_indices(5, 3) == std::vector<int64_t>{0, 1, 3});
  REQUIRE(internal::nearest_source_indices(3, 7) == std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2});
  REQUIRE(internal::nearest_source_indices(3, 6) == std::vector<int64_t>{0, 0, 1, 1, 2, 2});
  REQUIRE(internal::nearest_source_indices(4, 4) == std::vector<int64_t>{0, 1, 2, 3});
  auto x = Tensor<float>::arange(6).reshape({1, 2, 3});
  auto y = interpolate_nearest(x, 1, 2);  // Tensor overload: no autograd
  REQUIRE(y.shape() == Shape{1, 1, 2});
  REQUIRE(y.to_vector() == std::vector<float>{0, 1});
}

TEST_CASE("interpolate_nearest gradcheck", "[interpolate][gradcheck]") {
  for (auto [oh, ow] : {std::pair{3, 4}, {8, 11}, {10, 14}, {5, 7}, {1, 1}})
    REQUIRE_GRADCHECK([oh = oh, ow = ow](const V& v) { return interpolate_nearest(v[0], oh, ow); },
                      {randn({2, 3, 5, 7}, uint64_t(oh * 100 + ow))});
  REQUIRE_GRADCHECK([](const V& v) { return interpolate_nearest(v[0], 4, 2); }, {randn({3, 2}, 1)});  // [H, W]
}

TEST_CASE("interpolate_nearest matches torch (values, gradients, masks)", "[interpolate][parity]") {
  auto f = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/vision_ops.safetensors");
  for (std::string n : {"interp_down", "interp_up", "interp_2x", "interp_mixed"}) {
    INFO(n);
    Var<float> x(f.get<float>(n + ".x"), true);
    auto want = f.get<float>(n + ".out");
    auto y = interpolate_nearest(x, want.dim(2), want.dim(3));
    y.backward(f.get<float>(n + ".gout"));
    REQUIRE_ALLCLOSE(y.value(), want, 0.0, 0.0);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>(n + ".gx"), 1e-5, 1e-6);
  }
  auto m = interpolate_nearest(f.get<float>("interp_mask.m"), 4, 5);
  REQUIRE_ALLCLOSE(m, f.get<float>("interp_mask.out"), 0.0, 0.0);
}

TEST_CASE("interpolate_nearest errors", "[interpolate]") {
  REQUIRE_THROWS_WITH(interpolate_nearest(Tensor<float>::zeros({4}), 2, 2), Catch::Contains("[..., H, W], got [4]"));
  REQUIRE_THROWS_WITH(interpolate_nearest(Var<float>(Tensor<float>::zeros({1, 3, 3})), 0, 2),
                      Catch::Contains("output size (0, 2) must be positive"));
  REQUIRE_THROWS_WITH(interpolate_nearest(Tensor<float>::zeros({2, 0, 3}), 2, 2), Catch::Contains("empty spatial size"));
}
