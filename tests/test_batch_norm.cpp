#include "detr/io/safetensors.hpp"
#include "detr/ops/batch_norm.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::rand_uniform;
using detr::test::randn;
using V = std::vector<Var<double>>;

TEST_CASE("batch_norm training: normalised output and running-stat update", "[batch_norm]") {
  // One channel of 4 values: mean 2.5, biased var 1.25, unbiased var 5/3.
  Var<double> x(Tensor<double>::from({2, 1, 2}, {1, 2, 3, 4}));
  auto rm = Tensor<double>::from({1}, {1.0}), rv = Tensor<double>::from({1}, {2.0});
  auto y = batch_norm(x, rm, rv, Var<double>(), Var<double>(), true, 0.1, 0.0).value();
  REQUIRE(y.at({0, 0, 0}) == Approx(-1.5 / std::sqrt(1.25)).epsilon(1e-12));
  REQUIRE(rm.item() == Approx(0.9 * 1.0 + 0.1 * 2.5).epsilon(1e-12));
  REQUIRE(rv.item() == Approx(0.9 * 2.0 + 0.1 * 5.0 / 3.0).epsilon(1e-12));
  // evaluation uses (and keeps) the running stats
  auto rm0 = rm.clone();
  auto z = batch_norm(x, rm, rv, Var<double>(), Var<double>(), false, 0.1, 0.0).value();
  REQUIRE(z.at({1, 0, 1}) == Approx((4 - rm0.item()) / std::sqrt(rv.item())).epsilon(1e-12));
  REQUIRE(rm.item() == rm0.item());
}

TEST_CASE("batch_norm gradcheck, training and eval, with and without affine", "[batch_norm][gradcheck]") {
  auto x = randn({3, 4, 2, 3}, 1, 2.0), w = randn({4}, 2), b = randn({4}, 3);
  auto rm = randn({4}, 4), rv = rand_uniform({4}, 5, 0.5, 1.5);
  for (bool training : {true, false}) {
    INFO("training " << training);
    // gradcheck calls f many times; the running stats are throwaway copies here
    REQUIRE_GRADCHECK([&](const V& v) {
      auto m = rm.clone(), s = rv.clone();
      return batch_norm(v[0], m, s, v[1], v[2], training);
    }, {x, w, b});
    REQUIRE_GRADCHECK([&](const V& v) {
      auto m = rm.clone(), s = rv.clone();
      return batch_norm(v[0], m, s, Var<double>(), Var<double>(), training);
    }, {x});
    REQUIRE_GRADCHECK([&](const V& v) {  // [B, C] input, weight only
      auto m = rm.clone(), s = rv.clone();
      return batch_norm(v[0], m, s, v[1], Var<double>(), training);
    }, {randn({5, 4}, 6), w});
  }
  // no running stats at all in training; only 2 values per channel
  REQUIRE_GRADCHECK([](const V& v) {
    Tensor<double> none;
    return batch_norm(v[0], none, none, v[1], v[2], true);
  }, {randn({2, 3}, 7), randn({3}, 8), randn({3}, 9)});
}

TEST_CASE("batch_norm matches torch: training (grads, running stats), eval, frozen", "[batch_norm][parity]") {
  auto f = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/vision_ops.safetensors");
  for (std::string n : {"bn_train", "bn_train2d"}) {
    INFO(n);
    Var<float> x(f.get<float>(n + ".x"), true), w(f.get<float>(n + ".w"), true), b(f.get<float>(n + ".b"), true);
    auto rm = f.get<float>(n + ".running_mean_before"), rv = f.get<float>(n + ".running_var_before");
    auto y = batch_norm(x, rm, rv, w, b, true);
    y.backward(f.get<float>(n + ".gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>(n + ".out"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(rm, f.get<float>(n + ".running_mean"), 1e-5, 1e-6);
    REQUIRE_ALLCLOSE(rv, f.get<float>(n + ".running_var"), 1e-5, 1e-6);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>(n + ".gx"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(w.grad(), f.get<float>(n + ".gw"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(b.grad(), f.get<float>(n + ".gb"), 1e-4, 1e-5);
  }
  {
    Var<float> x(f.get<float>("bn_eval.x"), true), w(f.get<float>("bn_eval.w"), true), b(f.get<float>("bn_eval.b"), true);
    auto rm = f.get<float>("bn_eval.running_mean"), rv = f.get<float>("bn_eval.running_var");
    auto y = batch_norm(x, rm, rv, w, b, false);
    y.backward(f.get<float>("bn_eval.gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>("bn_eval.out"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>("bn_eval.gx"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(w.grad(), f.get<float>("bn_eval.gw"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(b.grad(), f.get<float>("bn_eval.gb"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(rm, f.get<float>("bn_eval.running_mean"), 0.0, 0.0);
  }
  {  // FrozenBatchNorm2d: every statistic and affine parameter fixed; only x gets a gradient
    Var<float> x(f.get<float>("bn_frozen.x"), true), w(f.get<float>("bn_frozen.w")), b(f.get<float>("bn_frozen.b"));
    auto rm = f.get<float>("bn_frozen.running_mean"), rv = f.get<float>("bn_frozen.running_var");
    auto y = batch_norm(x, rm, rv, w, b, false);
    y.backward(f.get<float>("bn_frozen.gout"));
    REQUIRE_ALLCLOSE(y.value(), f.get<float>("bn_frozen.out"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(x.grad(), f.get<float>("bn_frozen.gx"), 1e-4, 1e-5);
    REQUIRE_FALSE(w.grad().defined());
  }
}

TEST_CASE("batch_norm is deterministic on a large input", "[batch_norm]") {
  Rng rng(3);
  auto x = rng.normal_tensor<float>({4, 8, 64, 64}), g = rng.normal_tensor<float>({4, 8, 64, 64});
  auto run = [&] {
    Var<float> xv(x, true), w(Tensor<float>::ones({8}), true), b(Tensor<float>::zeros({8}), true);
    auto rm = Tensor<float>::zeros({8}), rv = Tensor<float>::ones({8});
    auto y = batch_norm(xv, rm, rv, w, b, true);
    y.backward(g);
    return std::array<Tensor<float>, 4>{y.value(), xv.grad(), w.grad(), rv};
  };
  auto a = run(), c = run();
  for (int i = 0; i < 4; ++i) REQUIRE(std::equal(a[i].data(), a[i].data() + a[i].numel(), c[i].data()));
}

TEST_CASE("batch_norm errors", "[batch_norm]") {
  Var<float> x(Tensor<float>::zeros({2, 3, 4}));
  auto rm = Tensor<float>::zeros({3}), rv = Tensor<float>::ones({3}), r4 = Tensor<float>::zeros({4});
  Tensor<float> none;
  REQUIRE_THROWS_WITH(batch_norm(x, r4, rv, Var<float>(), Var<float>(), true),
                      Catch::Contains("running_mean [4] vs input [2, 3, 4] (expected [3])"));
  REQUIRE_THROWS_WITH(batch_norm(x, rm, rv, Var<float>(Tensor<float>::ones({2})), Var<float>(), true),
                      Catch::Contains("weight [2]"));
  REQUIRE_THROWS_WITH(batch_norm(Var<float>(Tensor<float>::zeros({1, 3})), rm, rv, Var<float>(), Var<float>(), true),
                      Catch::Contains("more than 1 value per channel"));
  REQUIRE_THROWS_WITH(batch_norm(x, none, none, Var<float>(), Var<float>(), false),
                      Catch::Contains("evaluation mode needs running_mean"));
  REQUIRE_THROWS_WITH(batch_norm(Var<float>(Tensor<float>::zeros({3})), rm, rv, Var<float>(), Var<float>(), true),
                      Catch::Contains("[B, C, *], got [3]"));
}
