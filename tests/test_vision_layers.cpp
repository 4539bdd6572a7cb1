#include "detr/nn/batch_norm.hpp"
#include "detr/nn/conv2d.hpp"
#include "detr/nn/group_norm.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::randn;
using V = std::vector<Var<double>>;

namespace {
template <class M>
std::vector<std::string> param_names(M& m) {
  std::vector<std::string> n;
  for (auto& p : named_parameters(m)) n.push_back(p.name);
  return n;
}
template <class M>
std::vector<std::string> state_names(M& m) {
  std::vector<std::string> n;
  for (auto& [k, t] : state_dict(m)) n.push_back(k);
  return n;
}
using Names = std::vector<std::string>;
}  // namespace

TEST_CASE("Conv2d: names, shapes, torch's default init, forward", "[nn][conv]") {
  static_assert(Module<Conv2d<3, 8, 3>>);
  Conv2d<3, 8, 3, 2, 1> conv;
  Rng rng(1);
  conv.init(rng);
  REQUIRE(param_names(conv) == Names{"weight", "bias"});
  REQUIRE(conv.weight.shape() == Shape{8, 3, 3, 3});
  REQUIRE(num_parameters(conv) == 8 * 27 + 8);
  const double bound = 1 / std::sqrt(27.0);  // kaiming_uniform(a=sqrt(5)) with fan_in 27
  REQUIRE(conv.weight.value().arr().abs().maxCoeff() <= bound);
  REQUIRE(conv.weight.value().arr().abs().maxCoeff() > 0.8 * bound);
  REQUIRE(conv.bias.value().arr().abs().maxCoeff() <= bound);
  auto y = conv.forward(Var<float>(Tensor<float>::ones({2, 3, 9, 8})));
  REQUIRE(y.shape() == Shape{2, 8, 5, 4});

  Conv2d<4, 6, 1, 1, 0, 1, float, false> pointwise;
  REQUIRE(param_names(pointwise) == Names{"weight"});
}

TEST_CASE("Conv2d and GroupNorm layers gradcheck", "[nn][gradcheck]") {
  Conv2d<2, 3, 3, 1, 2, 2, double> conv;
  Rng rng(2);
  conv.init(rng);
  REQUIRE_GRADCHECK([&](const V& v) { return Conv2d<2, 3, 3, 1, 2, 2, double>{v[1], v[2]}.forward(v[0]); },
                    {randn({1, 2, 5, 4}, 3), conv.weight.value(), conv.bias.value()});
  REQUIRE_GRADCHECK([](const V& v) {
    GroupNorm<2, 4, double> gn{v[1], v[2]};
    return gn.forward(v[0]);
  }, {randn({2, 4, 3}, 4), randn({4}, 5), randn({4}, 6)});
}

TEST_CASE("BatchNorm2d: names, running stats in train mode, eval after eval()", "[nn][batch_norm]") {
  static_assert(Module<BatchNorm2d<4>>);
  BatchNorm2d<4> bn;
  REQUIRE(param_names(bn) == Names{"weight", "bias"});
  REQUIRE(state_names(bn) == Names{"bias", "num_batches_tracked", "running_mean", "running_var", "weight"});
  REQUIRE(bn.num_batches_tracked.shape() == Shape{});
  Rng rng(3);
  auto x = rng.normal_tensor<float>({2, 4, 3, 3}, 1.0, 2.0);
  bn.forward(Var<float>(x));
  bn.forward(Var<float>(x));
  REQUIRE(bn.num_batches_tracked.item() == 2.0f);
  REQUIRE(bn.running_mean.data()[0] != 0.0f);
  eval(bn);
  REQUIRE_FALSE(bn.training);
  auto rm = bn.running_mean.clone();
  auto y = bn.forward(Var<float>(x)).value();
  REQUIRE(bn.running_mean.to_vector() == rm.to_vector());
  REQUIRE(bn.num_batches_tracked.item() == 2.0f);
  const float want = (x.at({0, 1, 2, 0}) - rm.data()[1]) / std::sqrt(bn.running_var.data()[1] + 1e-5f);
  REQUIRE(y.at({0, 1, 2, 0}) == Approx(want).epsilon(1e-5));
  train(bn);
  REQUIRE(bn.training);
  REQUIRE_THROWS_WITH(bn.forward(Var<float>(Tensor<float>::zeros({2, 4}))),
                      Catch::Contains("BatchNorm2d: expected input [B, C, H, W], got [2, 4]"));
}

TEST_CASE("FrozenBatchNorm2d: torchvision's buffers, no parameters, never updates", "[nn][batch_norm]") {
  FrozenBatchNorm2d<3> bn;
  REQUIRE(param_names(bn).empty());
  REQUIRE(state_names(bn) == Names{"bias", "running_mean", "running_var", "weight"});
  bn.running_mean.fill_(0.5f);
  bn.weight.mutable_value().fill_(2.0f);
  train(bn);  // has no effect: frozen
  Var<float> x(Tensor<float>::ones({1, 3, 2, 2}), true);
  auto y = bn.forward(x);
  REQUIRE(y.value().at({0, 2, 1, 1}) == Approx(2.0f * 0.5f / std::sqrt(1.0f + 1e-5f)));
  REQUIRE(bn.running_mean.data()[0] == 0.5f);
  y.backward(Tensor<float>::ones(y.shape()));
  REQUIRE(x.grad().defined());
  REQUIRE_FALSE(bn.weight.grad().defined());
}

TEST_CASE("GroupNorm: names and default init", "[nn][group_norm]") {
  static_assert(Module<GroupNorm<32, 256>>);
  GroupNorm<32, 64> gn;
  Rng rng(4);
  gn.init(rng);
  REQUIRE(param_names(gn) == Names{"weight", "bias"});
  REQUIRE(gn.weight.value().arr().minCoeff() == 1.0f);
  auto y = gn.forward(Var<float>(rng.normal_tensor<float>({2, 64, 3, 3})));
  REQUIRE(y.shape() == Shape{2, 64, 3, 3});
}
