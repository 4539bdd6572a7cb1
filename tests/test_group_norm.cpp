#include "detr/io/safetensors.hpp"
#include "detr/ops/group_norm.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("group_norm forward: each group standardised, then the per-channel affine", "[group_norm]") {
  // groups of 2 channels x 2 positions; group 0 = {1, 2, 3, 4}: mean 2.5, var 1.25
  Var<double> x(Tensor<double>::from({1, 4, 2}, {1, 2, 3, 4, 10, 10, 10, 10}));
  Var<double> w(Tensor<double>::from({4}, {1, 2, 1, 1})), b(Tensor<double>::from({4}, {0, 1, 0, 5}));
  auto y = group_norm(x, 2, w, b, 0.0).value();
  const double s = 1 / std::sqrt(1.25);
  REQUIRE(y.at({0, 0, 0}) == Approx(-1.5 * s).epsilon(1e-12));
  REQUIRE(y.at({0, 1, 1}) == Approx(2 * 1.5 * s + 1).epsilon(1e-12));
  // a constant group maps to its bias (eps keeps 0 / 0 away)
  REQUIRE(group_norm(x, 2, w, b).value().at({0, 3, 0}) == Approx(5.0).epsilon(1e-12));
}

TEST_CASE("group_norm gradcheck", "[group_norm][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { return group_norm(v[0], 2, v[1], v[2]); },
                    {randn({2, 6, 3, 2}, 1, 2.0), randn({6}, 2), randn({6}, 3)});
  REQUIRE_GRADCHECK([](const V& v) { return group_norm(v[0], 3, v[1], v[2]); },
                    {randn({2, 3, 5}, 4), randn({3}, 5), randn({3}, 6)});  // one channel per group
  REQUIRE_GRADCHECK([](const V& v) { return group_norm(v[0], 1, v[1]); },
                    {randn({3, 4}, 7), randn({4}, 8)});                        // [B, C], one group
  REQUIRE_GRADCHECK([](const V& v) { return group_norm(v[0], 2); }, {randn({1, 4, 2, 2}, 9)});  // no affine
}

TEST_CASE("group_norm matches torch: GroupNorm(32, 64) and a [B, C, L] case", "[group_norm][parity]") {
  auto f = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/vision_ops.safetensors");
  for (auto [n, groups] : {std::pair<std::string, int>{"gn32", 32}, {"gn_small", 3}}) {
    INFO(n);
    Var<float> x(f.get<float>(n + ".x"), true), w(f.get<float>(n + ".w"), true), b(f.get<float>(n + ".b"), true);
    auto y = group_norm(x, groups, w, b);
    y.backward(f.get<float>(n + ".gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>(n + ".out"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>(n + ".gx"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(w.grad(), f.get<float>(n + ".gw"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(b.grad(), f.get<float>(n + ".gb"), 1e-4, 1e-5);
  }
}

TEST_CASE("group_norm is deterministic on a large input", "[group_norm]") {
  Rng rng(5);
  auto x = rng.normal_tensor<float>({2, 64, 40, 40}), g = rng.normal_tensor<float>({2, 64, 40, 40});
  auto w0 = rng.normal_tensor<float>({64});
  auto run = [&] {
    Var<float> xv(x, true), w(w0.clone(), true), b(Tensor<float>::zeros({64}), true);
    auto y = group_norm(xv, 32, w, b);
    y.backward(g);
    return std::array<Tensor<float>, 3>{y.value(), xv.grad(), w.grad()};
  };
  auto a = run(), c = run();
  for (int i = 0; i < 3; ++i) REQUIRE(std::equal(a[i].data(), a[i].data() + a[i].numel(), c[i].data()));
}

TEST_CASE("group_norm errors", "[group_norm]") {
  Var<float> x(Tensor<float>::zeros({2, 6, 4}));
  REQUIRE_THROWS_WITH(group_norm(x, 4), Catch::Contains("input [2, 6, 4] has 6 channels, not divisible by groups=4"));
  REQUIRE_THROWS_WITH(group_norm(x, 3, Var<float>(Tensor<float>::ones({4}))),
                      Catch::Contains("weight [4] vs input [2, 6, 4] (expected [6])"));
  REQUIRE_THROWS_WITH(group_norm(x, 3, Var<float>(), Var<float>(Tensor<float>::ones({2}))), Catch::Contains("bias [2]"));
  REQUIRE_THROWS_WITH(group_norm(Var<float>(Tensor<float>::zeros({6})), 3), Catch::Contains("got [6]"));
}
