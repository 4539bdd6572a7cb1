// HungarianMatcher and SetCriterion against the official PyTorch code
// (tests/reference/make_set_criterion.py): matched indices of every layer, every loss and
// logged metric, the weighted total and its gradients w.r.t. every layer's logits and boxes, for
// DETR (softmax, 2 aux layers) and Deformable DETR (focal, 2 aux layers, two-stage encoder).
#include "detr/loss/set_criterion.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
std::vector<BoxTarget<float>> load_targets(const io::SafetensorsFile& ref) {
  std::vector<BoxTarget<float>> t;
  for (int b = 0; b < 3; ++b)
    t.push_back({ref.get<int64_t>("target" + std::to_string(b) + ".labels"),
                 ref.get<float>("target" + std::to_string(b) + ".boxes")});
  return t;
}

Predictions<float> load_layer(const io::SafetensorsFile& ref, const std::string& prefix) {
  return {Var<float>(ref.get<float>(prefix + ".logits"), true), Var<float>(ref.get<float>(prefix + ".boxes"), true)};
}

void require_indices(const std::vector<MatchIndices>& got, const io::SafetensorsFile& ref, const std::string& key) {
  for (size_t b = 0; b < got.size(); ++b) {
    INFO(key << " image " << b);
    REQUIRE(got[b].query == ref.get<int64_t>(key + "." + std::to_string(b) + ".query").to_vector());
    REQUIRE(got[b].target == ref.get<int64_t>(key + "." + std::to_string(b) + ".target").to_vector());
  }
}

void require_scalar(const Var<float>& v, const io::SafetensorsFile& ref, const std::string& key) {
  INFO(key);
  REQUIRE(v.item() == Approx(ref.get<float>(key).item()).epsilon(1e-5).margin(1e-6));
}

void check(const std::string& name, bool focal) {
  const auto& ref = reference("set_criterion");
  auto targets = load_targets(ref);
  MatcherConfig mc;
  CriterionConfig cc;
  cc.num_classes = 7;
  if (focal) {
    mc.class_cost = ClassCost::focal;
    mc.cost_class = 2.0;
    cc.class_loss = ClassLoss::focal;
    cc.weight_ce = 2.0;
  }
  SetCriterion<float> criterion(cc, HungarianMatcher<float>(mc));
  std::vector<Predictions<float>> layers;
  for (int l = 0; l < 3; ++l) layers.push_back(load_layer(ref, name + ".layer" + std::to_string(l)));
  std::optional<Predictions<float>> enc;
  if (focal) enc = load_layer(ref, name + ".enc");
  Losses<float> losses = criterion(layers, targets, enc ? &*enc : nullptr);

  require_indices(losses.final_layer().indices, ref, name + ".indices.final");
  require_indices(losses.layers[0].indices, ref, name + ".indices.aux0");
  require_indices(losses.layers[1].indices, ref, name + ".indices.aux1");
  for (int l = 0; l < 3; ++l) {
    std::string suffix = l == 2 ? "" : "_" + std::to_string(l);
    require_scalar(losses.layers[l].loss_ce, ref, name + ".loss_ce" + suffix);
    require_scalar(losses.layers[l].loss_bbox, ref, name + ".loss_bbox" + suffix);
    require_scalar(losses.layers[l].loss_giou, ref, name + ".loss_giou" + suffix);
    REQUIRE(losses.layers[l].cardinality_error == Approx(ref.get<float>(name + ".cardinality_error" + suffix).item()));
  }
  REQUIRE(losses.class_error == Approx(ref.get<float>(name + ".class_error").item()).epsilon(1e-5));
  if (focal) {
    require_indices(losses.encoder->indices, ref, name + ".indices.enc");
    require_scalar(losses.encoder->loss_ce, ref, name + ".loss_ce_enc");
    require_scalar(losses.encoder->loss_bbox, ref, name + ".loss_bbox_enc");
    require_scalar(losses.encoder->loss_giou, ref, name + ".loss_giou_enc");
  }
  require_scalar(losses.total, ref, name + ".total");
  losses.total.backward();
  for (int l = 0; l < 3; ++l) {
    std::string p = name + ".layer" + std::to_string(l);
    INFO(p);
    REQUIRE_ALLCLOSE(layers[l].logits.grad(), ref.get<float>(p + ".grad_logits"), 1e-4, 1e-6);
    REQUIRE_ALLCLOSE(layers[l].boxes.grad(), ref.get<float>(p + ".grad_boxes"), 1e-4, 1e-6);
  }
  if (focal) {
    REQUIRE_ALLCLOSE(enc->logits.grad(), ref.get<float>(name + ".enc.grad_logits"), 1e-4, 1e-6);
    REQUIRE_ALLCLOSE(enc->boxes.grad(), ref.get<float>(name + ".enc.grad_boxes"), 1e-4, 1e-6);
  }
}
}  // namespace

TEST_CASE("DETR criterion matches the reference: indices, losses, metrics, gradients", "[criterion][parity]") {
  check("detr", false);
}

TEST_CASE("Deformable DETR criterion (focal, two-stage) matches the reference", "[criterion][parity]") {
  check("deformable", true);
}

TEST_CASE("matcher and criterion errors name the image", "[criterion]") {
  HungarianMatcher<float> matcher;
  auto logits = Tensor<float>::zeros({2, 3, 4});
  auto boxes = Tensor<float>::full({2, 3, 4}, 0.25f);
  std::vector<BoxTarget<float>> targets(2);
  targets[1] = {Tensor<int64_t>::from({1}, {2}), Tensor<float>::from({1, 4}, {0.5f, 0.5f, 0.2f, 0.2f})};
  REQUIRE(matcher(logits, boxes, targets)[0].size() == 0);  // an image without objects is fine
  logits.at({1, 2, 0}) = NAN;
  REQUIRE_THROWS_WITH(matcher(logits, boxes, targets), Catch::Contains("image 1") && Catch::Contains("query 2"));
  logits.at({1, 2, 0}) = 0;
  targets[1].labels.data()[0] = 3;  // 3 classes + no-object: label 3 is out of range
  REQUIRE_THROWS_WITH(matcher(logits, boxes, targets), Catch::Contains("image 1 target 0 has label 3"));
  targets[1].labels.data()[0] = 1;
  boxes.at({1, 0, 2}) = -0.5f;  // negative width: a degenerate predicted box
  REQUIRE_THROWS_WITH(matcher(logits, boxes, targets), Catch::Contains("image 1 predicted boxes box 0"));
  REQUIRE_THROWS_WITH(matcher(logits, boxes, std::vector<BoxTarget<float>>(3)), Catch::Contains("3 targets for a batch of 2"));
}

TEST_CASE("criterion with no targets at all: boxes contribute 0, class loss still trains", "[criterion]") {
  CriterionConfig cc;
  cc.num_classes = 3;
  SetCriterion<float> criterion(cc, HungarianMatcher<float>());
  Predictions<float> p{Var<float>(Tensor<float>::zeros({2, 5, 4}), true), Var<float>(Tensor<float>::full({2, 5, 4}, 0.3f), true)};
  auto losses = criterion({p}, std::vector<BoxTarget<float>>(2));
  REQUIRE(losses.final_layer().loss_bbox.item() == 0.f);
  REQUIRE(losses.class_error == 100.0);
  losses.total.backward();
  REQUIRE(p.logits.grad().defined());
}
