// The whole DETR model against facebookresearch/detr's DETR (tests/reference/make_detr_model.py,
// eval mode, two images of different sizes padded into one batch): the official state_dict loads
// strictly, every decoder layer's logits and boxes, every loss after matching (aux layers
// included), the weighted total and the gradients of the images and named parameters. Then the
// Detector glue (targets, post-processing, parameter groups) and input errors.
#include <set>

#include "detr/models/detr.hpp"
#include "detr/models/per_image.hpp"
#include "detr/nn/position_encoding.hpp"
#include "detr/nn/resnet.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
using SmallBackbone = Joiner<ResNet<18, 16, float, BackboneNorm::Frozen>, PositionEmbeddingSine<16>, 1>;
using SmallDetr = Detr<SmallBackbone, 5, 32, 4, 64, 2, 2, 10>;
static_assert(Detector<SmallDetr>);

std::vector<Target> reference_targets(const io::SafetensorsFile& ref) {
  std::vector<Target> targets(2);
  for (int b = 0; b < 2; ++b) {
    targets[b].image_id = b;
    targets[b].labels = ref.get<int64_t>("target" + std::to_string(b) + ".labels");
    targets[b].boxes = ref.get<float>("target" + std::to_string(b) + ".boxes");
    targets[b].normalized = true;
  }
  return targets;
}

SmallDetr reference_model() {
  SmallDetr m;
  Rng rng(0);
  m.init(rng);
  load_state_dict(m, reference("detr_model_weights"));  // strict: no name missing or extra
  eval(m);
  return m;
}
}  // namespace

TEST_CASE("Detr parameter names are the official state_dict keys", "[detr_model]") {
  SmallDetr m;
  std::set<std::string> names;
  for (auto& [n, t] : state_dict(m)) names.insert(n);
  const auto& keys = reference("detr_model_weights").names();
  REQUIRE(names == std::set<std::string>(keys.begin(), keys.end()));
}

TEST_CASE("Detr matches facebookresearch/detr: outputs, losses and gradients", "[parity][detr_model]") {
  const auto& ref = reference("detr_model");
  SmallDetr m = reference_model();
  Var<float> images(ref.get<float>("images"), true);
  auto out = m.forward(images, ref.get<uint8_t>("mask"));
  REQUIRE(out.layers.size() == 2);
  REQUIRE_FALSE(out.encoder);
  for (int l = 0; l < 2; ++l) {
    INFO("decoder layer " << l);
    REQUIRE(out.layers[l].logits.shape() == Shape({2, 10, 6}));
    REQUIRE_ALLCLOSE(out.layers[l].logits.value(), ref.get<float>("logits")[l], 1e-4, 2e-5);
    REQUIRE_ALLCLOSE(out.layers[l].boxes.value(), ref.get<float>("boxes")[l], 1e-4, 1e-5);
  }

  SetCriterion<float> criterion(SmallDetr::criterion_config(), HungarianMatcher<float>(SmallDetr::matcher_config()));
  Losses<float> losses = criterion(out.layers, box_targets(reference_targets(ref)));
  auto scalar = [&](const std::string& k) { return double(ref.get<float>("loss." + k).data()[0]); };
  REQUIRE(losses.final_layer().loss_ce.item() == Approx(scalar("loss_ce")).epsilon(1e-5));
  REQUIRE(losses.final_layer().loss_bbox.item() == Approx(scalar("loss_bbox")).epsilon(1e-5));
  REQUIRE(losses.final_layer().loss_giou.item() == Approx(scalar("loss_giou")).epsilon(1e-5));
  REQUIRE(losses.layers[0].loss_ce.item() == Approx(scalar("loss_ce_0")).epsilon(1e-5));
  REQUIRE(losses.layers[0].loss_bbox.item() == Approx(scalar("loss_bbox_0")).epsilon(1e-5));
  REQUIRE(losses.layers[0].loss_giou.item() == Approx(scalar("loss_giou_0")).epsilon(1e-5));
  REQUIRE(losses.final_layer().cardinality_error == Approx(scalar("cardinality_error")));
  REQUIRE(losses.class_error == Approx(scalar("class_error")).margin(1e-4));
  REQUIRE(losses.total.item() == Approx(double(ref.get<float>("total").data()[0])).epsilon(1e-5));

  losses.total.backward();
  REQUIRE_ALLCLOSE(images.grad(), ref.get<float>("grad.images"), 1e-3, 1e-6);
  int checked = 0;
  for (auto& p : named_parameters(m)) {
    if (!ref.contains("grad." + p.name)) continue;
    INFO("parameter " << p.name);
    REQUIRE_ALLCLOSE(p.var->grad(), ref.get<float>("grad." + p.name), 1e-3, 1e-5);
    ++checked;
  }
  REQUIRE(checked == 8);
}

TEST_CASE("Detr post-processing, targets and parameter groups", "[detr_model]") {
  const auto& ref = reference("detr_model");
  SmallDetr m = reference_model();
  NoGrad no_grad;
  auto out = m.forward(Var<float>(ref.get<float>("images")), ref.get<uint8_t>("mask"));
  auto dets = postprocess<SmallDetr>(out.final(), {{70, 90}, {52, 64}});
  REQUIRE(dets.size() == 2);
  REQUIRE(dets[1].scores.numel() == 10);  // softmax: one detection per query
  for (int64_t q = 0; q < 10; ++q) {
    REQUIRE(dets[1].labels.data()[q] >= 0);
    REQUIRE(dets[1].labels.data()[q] < 5);
  }

  auto groups = detector_param_groups(m, 1e-4, 1e-5);
  REQUIRE(groups.size() == 2);  // main and backbone; Detr has no deformable linear projections
  REQUIRE(*groups[1].lr == 1e-5);
  for (auto& p : groups[1].params) REQUIRE(p.name.rfind("backbone.", 0) == 0);
  size_t n = 0;
  for (auto& g : groups) n += g.params.size();
  REQUIRE(n == named_parameters(m).size());

  std::vector<Target> raw(1);
  raw[0].labels = Tensor<int64_t>::from({1}, {0});
  raw[0].boxes = Tensor<float>::from({1, 4}, {1, 2, 30, 40});
  REQUIRE_THROWS_WITH(box_targets(raw), Catch::Contains("unnormalised boxes"));
}

TEST_CASE("Detr rejects malformed input with the expected shapes", "[detr_model]") {
  SmallDetr m = reference_model();
  NoGrad no_grad;
  Var<float> gray(Tensor<float>::zeros({1, 1, 64, 64}));
  REQUIRE_THROWS_WITH(m.forward(gray, Tensor<uint8_t>::zeros({1, 64, 64})), Catch::Contains("[B, 3, H, W]"));
  Var<float> rgb(Tensor<float>::zeros({1, 3, 64, 64}));
  REQUIRE_THROWS_WITH(m.forward(rgb, Tensor<uint8_t>::zeros({1, 32, 64})), Catch::Contains("mask"));
}

TEST_CASE("Detr detections do not change with padding under forward_per_image", "[detr_model][padding]") {
  const auto& ref = reference("detr_model");
  SmallDetr m = reference_model();
  NoGrad no_grad;
  // The reference batch holds a 70x90 image and, padded, a 52x64 one; run the small one alone.
  const Tensor<float> batch_images = ref.get<float>("images");  // [2, 3, 70, 90]
  const Tensor<uint8_t> batch_mask = ref.get<uint8_t>("mask");  // [2, 70, 90]
  Var<float> alone = slice(slice(slice(Var<float>(batch_images), 0, 1, 2), 2, 0, 52), 3, 0, 64);
  const auto alone_mask = Tensor<uint8_t>::zeros({1, 52, 64});
  const auto single = m.forward(alone, alone_mask);
  auto max_diff = [&](const DetectorOutput<float>& batched) {
    REQUIRE(batched.layers.size() == single.layers.size());
    double d = 0;
    for (size_t l = 0; l < single.layers.size(); ++l) {
      const auto& a = batched.layers[l];
      const auto& s = single.layers[l];
      REQUIRE(a.logits.shape() == Shape({2, s.logits.dim(1), s.logits.dim(2)}));
      for (int64_t i = 0; i < s.logits.numel(); ++i)
        d = std::max(d, double(std::abs(a.logits.value()[1].data()[i] - s.logits.value().data()[i])));
      for (int64_t i = 0; i < s.boxes.numel(); ++i)
        d = std::max(d, double(std::abs(a.boxes.value()[1].data()[i] - s.boxes.value().data()[i])));
    }
    return d;
  };
  // The reference's batched forward lets the padding leak into the backbone's edge features.
  const double leaky = max_diff(m.forward(Var<float>(batch_images), batch_mask));
  const double invariant = max_diff(forward_per_image(m, Var<float>(batch_images), batch_mask));
  INFO("max |difference| of logits and boxes: batched " << leaky << ", per image " << invariant);
  CHECK(leaky > 1e-3);
  REQUIRE(invariant < 2e-5);

  Var<float> images(batch_images);
  auto bad = batch_mask.clone();
  bad.data()[5] = 1;  // a hole inside the first image
  REQUIRE_THROWS_WITH(forward_per_image(m, images, bad), Catch::Contains("image 0's mask is not a top-left"));
  auto empty = batch_mask.clone();
  std::fill_n(empty.data() + 70 * 90, 70 * 90, uint8_t(1));  // the second image is all padding
  REQUIRE_THROWS_WITH(forward_per_image(m, images, empty), Catch::Contains("image 1 has no unpadded pixel"));
  REQUIRE_THROWS_WITH(forward_per_image(m, images, Tensor<uint8_t>::zeros({2, 70, 80})),
                      Catch::Contains("must be [B, H, W] of images [2, 3, 70, 90]"));
}
