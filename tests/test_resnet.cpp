#include <algorithm>
#include <sstream>

#include "detr/nn/resnet.hpp"
#include "detr/ops/reduce.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::randn;
using detr::test::reference;
using V = std::vector<Var<double>>;

namespace {
// "name:AxBxC;name:..." (the metadata make_resnet.py writes) -> name -> shape
std::map<std::string, Shape> parse_shapes(const std::string& s) {
  std::map<std::string, Shape> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ';')) {
    const auto colon = item.find(':');
    std::vector<int64_t> dims;
    std::stringstream ds(item.substr(colon + 1));
    std::string d;
    while (std::getline(ds, d, 'x'))
      if (!d.empty()) dims.push_back(std::stoll(d));
    out[item.substr(0, colon)] = Shape(dims);
  }
  return out;
}

template <class M>
std::map<std::string, Shape> state_shapes(M& m) {
  std::map<std::string, Shape> out;
  for (auto& [k, t] : state_dict(m)) out[k] = t.shape();
  return out;
}

template <class M>
void require_torchvision_names(const std::string& arch) {
  auto m = std::make_unique<M>();
  auto want = parse_shapes(reference("resnet").metadata().at(arch));
  auto got = state_shapes(*m);
  REQUIRE(got.size() == want.size());
  for (auto& [k, s] : want) {
    INFO(arch << " " << k);
    REQUIRE(got.count(k) == 1);
    REQUIRE(got[k] == s);
  }
}
}  // namespace

TEST_CASE("ResNet: torchvision's state_dict names and shapes (no fc), parameter counts", "[nn][resnet]") {
  static_assert(Module<ResNet<18>>);
  require_torchvision_names<ResNet<18>>("resnet18");
  require_torchvision_names<ResNet<34>>("resnet34");
  require_torchvision_names<ResNet<50>>("resnet50");
  // torchvision's counts (11,689,512 / 21,797,672 / 25,557,032) less the fc layer (512 or 2048
  // inputs, 1000 outputs).
  auto r18 = std::make_unique<ResNet<18>>();
  auto r34 = std::make_unique<ResNet<34>>();
  auto r50 = std::make_unique<ResNet<50>>();
  REQUIRE(num_parameters(*r18) == 11689512 - 513000);
  REQUIRE(num_parameters(*r34) == 21797672 - 513000);
  REQUIRE(num_parameters(*r50) == 25557032 - 2049000);

  // Frozen norms: the convs are the only parameters; the norms keep DETR's four buffers.
  ResNet<18, 16, float, BackboneNorm::Frozen> frozen;
  for (auto& p : named_parameters(frozen)) REQUIRE(p.name.find("bn") == std::string::npos);
  auto sd = state_dict(frozen);
  REQUIRE(sd.count("layer2.0.downsample.1.running_mean") == 1);
  REQUIRE(sd.count("bn1.num_batches_tracked") == 0);
  REQUIRE(sd.count("layer1.0.downsample.0.weight") == 0);  // BasicBlock layer1 keeps the shape
  ResNet<50, 16, float, BackboneNorm::Frozen> frozen50;
  REQUIRE(state_dict(frozen50).count("layer1.0.downsample.0.weight") == 1);  // 4x expansion
}

TEST_CASE("ResNet: output channels are compile-time, strides 8 / 16 / 32", "[nn][resnet]") {
  using R18 = ResNet<18, 8>;
  using R50 = ResNet<50, 16>;
  static_assert(R18::c3_channels == 16 && R18::c4_channels == 32 && R18::c5_channels == 64);
  static_assert(R50::c3_channels == 32 && R50::c4_channels == 64 && R50::c5_channels == 128);
  static_assert(ResNet<50>::c5_channels == 2048 && ResNet<34>::c5_channels == 512);
  static_assert(R50::channels[1] == 64 && R50::strides[2] == 32);

  R50 net;
  Rng rng(1);
  net.init(rng);
  auto f = net.forward(Var<float>(rng.normal_tensor<float>({2, 3, 64, 96})));
  REQUIRE(f.c3.shape() == Shape{2, 32, 8, 12});
  REQUIRE(f.c4.shape() == Shape{2, 64, 4, 6});
  REQUIRE(f.c5.shape() == Shape{2, 128, 2, 3});
  // Sizes that do not divide: every stride-2 stage computes floor((n - 1) / 2) + 1.
  ResNet<18, 16, float, BackboneNorm::Frozen> small;
  small.init(rng);
  auto g = small.forward(Var<float>(rng.normal_tensor<float>({1, 3, 50, 66})));
  REQUIRE(g.c3.shape() == Shape{1, 8, 7, 9});
  REQUIRE(g.c4.shape() == Shape{1, 16, 4, 5});
  REQUIRE(g.c5.shape() == Shape{1, 32, 2, 3});

  REQUIRE_THROWS_WITH(net.forward(Var<float>(Tensor<float>::zeros({2, 1, 64, 64}))),
                      Catch::Contains("ResNet: expected images [B, 3, H, W], got [2, 1, 64, 64]"));
}

TEST_CASE("ResNet: torchvision's init (kaiming normal fan_out, norms 1 / 0)", "[nn][resnet]") {
  ResNet<18, 2> net;
  Rng rng(2);
  net.init(rng);
  const auto& w = net.layer3.first.conv2.weight.value();  // [128, 128, 3, 3]
  const double n = double(w.numel());
  const double mean = w.arr().template cast<double>().sum() / n;
  const double sd = std::sqrt(w.arr().template cast<double>().square().sum() / n - mean * mean);
  REQUIRE(std::abs(mean) < 0.002);
  REQUIRE(sd == Approx(std::sqrt(2.0 / (128 * 9))).epsilon(0.02));
  REQUIRE(net.layer2.first.bn2.weight.value().arr().minCoeff() == 1.0f);
  REQUIRE(net.layer2.first.downsample.bn.bias.value().arr().abs().maxCoeff() == 0.0f);
}

TEST_CASE("ResNet blocks gradcheck (basic and bottleneck, with downsample)", "[nn][resnet][gradcheck]") {
  using Basic = BasicBlock<2, 3, 2, double, BackboneNorm::Frozen>;
  Basic basic;
  Rng rng(3);
  basic.init(rng);
  basic.bn1.running_mean.fill_(0.1);
  basic.downsample.bn.running_var.fill_(2.0);
  REQUIRE_GRADCHECK([&](const V& v) {
    Basic b = basic;
    b.conv1.weight = v[1];
    b.conv2.weight = v[2];
    b.downsample.conv.weight = v[3];
    return b.forward(v[0]);
  }, {randn({2, 2, 5, 4}, 4), basic.conv1.weight.value(), basic.conv2.weight.value(),
      basic.downsample.conv.weight.value()});

  using Neck = Bottleneck<3, 2, 1, double, BackboneNorm::Trainable>;
  Neck neck;
  neck.init(rng);
  REQUIRE_GRADCHECK([&](const V& v) {
    Neck b = neck;
    b.conv3.weight = v[1];
    b.bn3.weight = v[2];
    b.downsample.bn.bias = v[3];
    return b.forward(v[0]);
  }, {randn({2, 3, 4, 3}, 5), neck.conv3.weight.value(), randn({8}, 6), randn({8}, 7)});
}

TEST_CASE("ResNet: trainable norms use batch statistics in training mode", "[nn][resnet]") {
  ResNet<18, 16> net;
  Rng rng(4);
  net.init(rng);
  auto x = Var<float>(rng.normal_tensor<float>({2, 3, 32, 32}));
  auto f = net.forward(x);
  REQUIRE(net.bn1.num_batches_tracked.item() == 1.0f);
  REQUIRE(net.layer4.rest[0].bn2.running_mean.arr().abs().maxCoeff() > 0.0f);
  sum(f.c5).backward();
  REQUIRE(net.layer4.rest[0].bn2.weight.grad().defined());
  eval(net);
  auto before = net.bn1.running_mean.clone();
  net.forward(x);
  REQUIRE(net.bn1.running_mean.to_vector() == before.to_vector());
  REQUIRE(net.bn1.num_batches_tracked.item() == 1.0f);
}

namespace {
template <class Net>
void resnet_parity(const std::string& c, const std::vector<std::string>& grads, double rtol, double atol) {
  const auto& ref = reference("resnet");
  Net net;
  load_state_dict(net, ref, true, c + ".");
  Var<float> x(ref.get<float>("x"), true);
  auto f = net.forward(x);
  REQUIRE_ALLCLOSE(f.c3.value(), ref.get<float>(c + ".c3"), rtol, atol);
  REQUIRE_ALLCLOSE(f.c4.value(), ref.get<float>(c + ".c4"), rtol, atol);
  REQUIRE_ALLCLOSE(f.c5.value(), ref.get<float>(c + ".c5"), rtol, atol);
  auto loss = sum(f.c3 * Var<float>(ref.get<float>(c + ".grad_c3"))) +
              sum(f.c4 * Var<float>(ref.get<float>(c + ".grad_c4"))) +
              sum(f.c5 * Var<float>(ref.get<float>(c + ".grad_c5")));
  loss.backward();
  REQUIRE_ALLCLOSE(x.grad(), ref.get<float>(c + ".grad.x"), rtol, atol);
  auto params = named_parameters(net);
  for (auto& name : grads) {
    INFO(c << " parameter " << name);
    auto it = std::find_if(params.begin(), params.end(), [&](auto& p) { return p.name == name; });
    REQUIRE(it != params.end());
    // A weight gradient sums B H W products per element (conv1's reach |g| ~ 300 in r50), so
    // float rounding of the large ones is ~1e-7 of the largest: atol scales with it.
    const auto want = ref.get<float>(c + ".grad." + name);
    const double scale = want.arr().abs().maxCoeff();
    REQUIRE_ALLCLOSE(it->var->grad(), want, rtol, std::max(atol, 1e-6 * scale));
  }
}
}  // namespace

TEST_CASE("ResNet-18 / 50 with frozen norms match the PyTorch twin (C3-C5, input and weight grads)",
          "[nn][resnet][parity]") {
  SECTION("resnet18 / 32") {
    resnet_parity<ResNet<18, 32, float, BackboneNorm::Frozen>>(
        "r18", {"conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight"}, 1e-4, 1e-5);
  }
  SECTION("resnet50 / 32") {
    resnet_parity<ResNet<50, 32, float, BackboneNorm::Frozen>>(
        "r50", {"conv1.weight", "layer2.0.downsample.0.weight", "layer4.2.conv3.weight"}, 1e-4, 1e-5);
  }
}

TEST_CASE("feature_masks: the padding mask at each level, nearest as F.interpolate", "[nn][resnet]") {
  ResNet<18, 16, float, BackboneNorm::Frozen> net;
  Rng rng(5);
  net.init(rng);
  // Image 0 fills 64 x 96; image 1 is 40 x 50 in the top-left corner.
  auto mask = Tensor<uint8_t>::zeros({2, 64, 96});
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 96; ++x) mask.data()[(64 + y) * 96 + x] = (y >= 40 || x >= 50) ? 1 : 0;
  auto f = net.forward(Var<float>(rng.normal_tensor<float>({2, 3, 64, 96})));
  auto m = feature_masks(mask, f);
  REQUIRE(m[0].shape() == Shape{2, 8, 12});
  REQUIRE(m[2].shape() == Shape{2, 2, 3});
  // Level 3 (stride 8): source rows 8 y, so rows y >= 5 and columns x >= 7 (8 x >= 50) pad.
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 12; ++x) {
      REQUIRE(m[0].data()[y * 12 + x] == 0);
      REQUIRE(m[0].data()[96 + y * 12 + x] == ((y >= 5 || x >= 7) ? 1 : 0));
    }
  REQUIRE_THROWS_WITH(feature_masks(Tensor<uint8_t>::zeros({3, 64, 96}), f),
                      Catch::Contains("feature_masks: mask [3, 64, 96] does not match feature level 0"));
}

TEST_CASE("apply_train_backbone: DETR's rule (layer2-4 train iff lr_backbone > 0)", "[nn][resnet]") {
  ResNet<18, 16> net;
  apply_train_backbone(net, 1e-5);
  for (auto& p : named_parameters(net)) {
    INFO(p.name);
    const bool late = p.name.rfind("layer1", 0) != 0 && p.name.rfind("conv1", 0) != 0 &&
                      p.name.rfind("bn1", 0) != 0;
    REQUIRE(p.var->requires_grad() == late);
  }
  REQUIRE_FALSE(net.conv1.weight.requires_grad());
  REQUIRE(net.layer2.first.conv1.weight.requires_grad());
  apply_train_backbone(net, 0.0);
  for (auto& p : named_parameters(net)) REQUIRE_FALSE(p.var->requires_grad());
  // A frozen stem takes no gradient but still passes it on to the input.
  apply_train_backbone(net, 1e-5);
  Var<float> x(Tensor<float>::ones({1, 3, 64, 64}), true);
  sum(net.forward(x).c5).backward();
  REQUIRE_FALSE(net.conv1.weight.grad().defined());
  REQUIRE(net.layer2.first.conv1.weight.grad().defined());
  REQUIRE(x.grad().defined());
}
