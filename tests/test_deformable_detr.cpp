// Deformable DETR (plain, iterative box refinement, two-stage) against the official model
// (tests/reference/make_deformable_detr.py, eval mode, a width-reduced ResNet-18 backbone):
// weights loaded strictly from the official state_dict converted by tools/convert_checkpoint.py
// (which proves the names), every decoder layer's logits and boxes, the two-stage encoder
// outputs, the matched losses (our SetCriterion with the model's focal config against the
// official SetCriterion) and the gradients of named parameters from the backbone to the heads.
// Also: the reference initialisation, padding invariance of the transformer, and the errors on
// malformed inputs.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "detr/models/deformable_detr.hpp"
#include "detr/models/per_image.hpp"
#include "detr/nn/position_encoding.hpp"
#include "detr/ops/reduce.hpp"
#include "parity.hpp"

using namespace detr;
using detr::test::reference;

namespace {
using Net = ResNet<18, 32, float, BackboneNorm::Frozen>;
using Backbone = Joiner<Net, PositionEmbeddingSine<16, float, SineNorm::Deformable>, 3>;

constexpr DeformableDetrConfig kPlain{.hidden_dim = 32,
                                      .nheads = 4,
                                      .dim_feedforward = 64,
                                      .enc_layers = 2,
                                      .dec_layers = 2,
                                      .num_queries = 12,
                                      .num_feature_levels = 4,
                                      .dec_n_points = 2,
                                      .enc_n_points = 2};
constexpr DeformableDetrConfig kRefine = [] {
  auto c = kPlain;
  c.with_box_refine = true;
  return c;
}();
constexpr DeformableDetrConfig kTwoStage = [] {
  auto c = kRefine;
  c.two_stage = true;
  return c;
}();
constexpr int kClasses = 4;
using Plain = DeformableDetr<Backbone, kClasses, kPlain>;
using Refine = DeformableDetr<Backbone, kClasses, kRefine>;
using TwoStage = DeformableDetr<Backbone, kClasses, kTwoStage>;
static_assert(Detector<Plain> && Detector<Refine> && Detector<TwoStage>);

std::vector<BoxTarget<float>> reference_targets() {
  const auto& ref = reference("deformable_detr");
  std::vector<BoxTarget<float>> t(2);
  for (int b = 0; b < 2; ++b) {
    t[size_t(b)].labels = ref.get<int64_t>("target" + std::to_string(b) + ".labels");
    t[size_t(b)].boxes = ref.get<float>("target" + std::to_string(b) + ".boxes");
  }
  return t;
}

void require_loss(const LayerLosses<float>& l, const std::string& suffix, const std::string& variant) {
  const auto& ref = reference("deformable_detr");
  INFO("losses" << suffix);
  REQUIRE_ALLCLOSE(l.loss_ce.value(), ref.get<float>(variant + ".loss_ce" + suffix), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(l.loss_bbox.value(), ref.get<float>(variant + ".loss_bbox" + suffix), 1e-4, 1e-5);
  REQUIRE_ALLCLOSE(l.loss_giou.value(), ref.get<float>(variant + ".loss_giou" + suffix), 1e-4, 1e-5);
}

// The whole model against the reference; returns how many parameter gradients were compared.
template <class M>
int check_parity(const std::string& variant) {
  const auto& ref = reference("deformable_detr");
  M m;
  Rng rng(0);
  m.init(rng);
  load_state_dict(m, reference("deformable_detr_" + variant + "_weights"));  // strict
  eval(m);
  auto out = m.forward(Var<float>(ref.get<float>("images")), ref.get<uint8_t>("mask"));
  REQUIRE(out.layers.size() == 2);
  for (size_t l = 0; l < 2; ++l) {
    INFO(variant << " decoder layer " << l);
    const std::string p = variant + ".layer" + std::to_string(l);
    REQUIRE(out.layers[l].logits.shape() == Shape({2, 12, kClasses}));
    REQUIRE_ALLCLOSE(out.layers[l].logits.value(), ref.get<float>(p + ".logits"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(out.layers[l].boxes.value(), ref.get<float>(p + ".boxes"), 1e-4, 1e-5);
  }
  REQUIRE(out.encoder.has_value() == M::two_stage);
  if (out.encoder) {
    REQUIRE(out.encoder->logits.shape() == Shape({2, 256, kClasses}));
    REQUIRE_ALLCLOSE(out.encoder->logits.value(), ref.get<float>(variant + ".enc.logits"), 1e-4, 1e-5);
    REQUIRE_ALLCLOSE(out.encoder->boxes.value(), ref.get<float>(variant + ".enc.boxes"), 1e-4, 1e-5);
  }

  SetCriterion<float> criterion(M::criterion_config(), HungarianMatcher<float>(M::matcher_config()));
  auto losses = criterion(out.layers, reference_targets(), out.encoder_ptr());
  require_loss(losses.layers[0], "_0", variant);
  require_loss(losses.layers[1], "", variant);
  if (losses.encoder) require_loss(*losses.encoder, "_enc", variant);
  REQUIRE_ALLCLOSE(losses.total.value(), ref.get<float>(variant + ".total"), 1e-4, 1e-5);

  losses.total.backward();
  int checked = 0;
  for (auto& p : named_parameters(m)) {
    const std::string key = variant + ".grad." + p.name;
    if (!ref.contains(key)) continue;
    INFO(variant << " parameter " << p.name);
    REQUIRE(p.var->grad().defined());
    // The backbone's and the input projections' gradients sum many large terms that cancel
    // (torch's own float32 result is off its float64 one by ~3e-6 of the largest entry), so the
    // absolute tolerance scales with the tensor's largest entry.
    const auto expected = ref.get<float>(key);
    const auto e = expected.to_vector();
    float largest = 0;
    for (float v : e) largest = std::max(largest, std::abs(v));
    REQUIRE_ALLCLOSE(p.var->grad(), expected, 1e-4, std::max(1e-5, 2e-5 * double(largest)));
    ++checked;
  }
  return checked;
}
}  // namespace

TEST_CASE("DeformableDetr matches the official model", "[parity][deformable_detr]") {
  SECTION("plain") { REQUIRE(check_parity<Plain>("plain") == 17); }
  SECTION("with_box_refine") { REQUIRE(check_parity<Refine>("refine") == 19); }
  SECTION("two_stage") { REQUIRE(check_parity<TwoStage>("two_stage") == 21); }
}

TEST_CASE("DeformableDetr parameter names are the converted official state_dict", "[deformable_detr]") {
  auto names = [](auto& m) {
    std::set<std::string> s;
    for (auto& [n, t] : state_dict(m)) s.insert(n);
    return s;
  };
  auto file_names = [](const std::string& v) {
    auto n = reference("deformable_detr_" + v + "_weights").names();
    return std::set<std::string>(n.begin(), n.end());
  };
  Plain plain;
  Refine refine;
  TwoStage two;
  REQUIRE(names(plain) == file_names("plain"));
  REQUIRE(names(refine) == file_names("refine"));
  REQUIRE(names(two) == file_names("two_stage"));
  // Shared heads once, per-layer heads per layer (+ the proposal heads), no query_embed for two-stage.
  auto np = names(plain), nr = names(refine), nt = names(two);
  REQUIRE(np.count("class_embed.0.weight"));
  REQUIRE(!np.count("class_embed.1.weight"));
  REQUIRE(nr.count("bbox_embed.1.layers.2.bias"));
  REQUIRE(!nr.count("bbox_embed.2.layers.2.bias"));
  REQUIRE(nt.count("class_embed.2.bias"));
  REQUIRE(np.count("query_embed.weight"));
  REQUIRE(!nt.count("query_embed.weight"));
  REQUIRE(nt.count("transformer.pos_trans_norm.weight"));
  REQUIRE(!nt.count("transformer.reference_points.weight"));
  REQUIRE(np.count("input_proj.3.1.bias"));
  REQUIRE(plain.transformer.level_embed.shape() == Shape({4, 32}));
  REQUIRE(std::get<3>(plain.input_proj).conv.weight.shape() == Shape({32, 16, 3, 3}));
  REQUIRE(std::get<0>(plain.input_proj).conv.weight.shape() == Shape({32, 4, 1, 1}));
}

TEST_CASE("DeformableDetr initialisation follows the reference", "[deformable_detr]") {
  const float prior = float(-std::log(99.0));
  auto all_equal = [](const Tensor<float>& t, float v) {
    auto x = t.to_vector();
    return std::all_of(x.begin(), x.end(), [v](float e) { return e == v; });
  };
  SECTION("plain: shared heads, box size logits at -2") {
    Plain m;
    Rng rng(1);
    m.init(rng);
    REQUIRE(all_equal(m.class_embed[0].bias.value(), prior));
    REQUIRE(all_equal(m.bbox_embed[0].last.weight.value(), 0.f));
    REQUIRE(m.bbox_embed[0].last.bias.value().to_vector() == std::vector<float>{0, 0, -2, -2});
    REQUIRE(all_equal(m.transformer.stage.reference_points.bias.value(), 0.f));
    REQUIRE(all_equal(std::get<0>(m.input_proj).conv.bias.value(), 0.f));
    REQUIRE(all_equal(m.transformer.encoder.layers[0].self_attn.attention_weights.weight.value(), 0.f));
    REQUIRE(!all_equal(m.transformer.level_embed.value(), 0.f));
  }
  SECTION("refine: deep copies of one head, -2 on the first only") {
    Refine m;
    Rng rng(2);
    m.init(rng);
    REQUIRE(m.class_embed[1].weight.value().to_vector() == m.class_embed[0].weight.value().to_vector());
    REQUIRE(m.bbox_embed[1].first.weight.value().to_vector() == m.bbox_embed[0].first.weight.value().to_vector());
    REQUIRE(m.bbox_embed[0].last.bias.value().to_vector() == std::vector<float>{0, 0, -2, -2});
    REQUIRE(all_equal(m.bbox_embed[1].last.bias.value(), 0.f));
  }
  SECTION("two-stage: every box head starts at zero") {
    TwoStage m;
    Rng rng(3);
    m.init(rng);
    for (int i = 0; i < TwoStage::num_pred; ++i) REQUIRE(all_equal(m.bbox_embed[i].last.bias.value(), 0.f));
    REQUIRE(all_equal(m.class_embed[2].bias.value(), prior));
  }
}

TEST_CASE("DeformableDetr output shapes and input errors", "[deformable_detr]") {
  Refine m;
  Rng rng(4);
  m.init(rng);
  eval(m);
  Var<float> images(detr::test::randn({1, 3, 40, 48}, 5).cast<float>());
  auto mask = Tensor<uint8_t>::zeros({1, 40, 48});
  auto out = m.forward(images, mask);
  REQUIRE(out.layers.size() == 2);
  REQUIRE(out.final().boxes.shape() == Shape({1, 12, 4}));
  auto b = out.final().boxes.value().to_vector();
  REQUIRE(std::all_of(b.begin(), b.end(), [](float v) { return v > 0 && v < 1; }));
  REQUIRE(!out.encoder);

  REQUIRE_THROWS_WITH(m.forward(Var<float>(Tensor<float>::zeros({3, 40, 48})), mask),
                      Catch::Contains("images must be [B, 3, H, W]"));
  REQUIRE_THROWS_WITH(m.forward(Var<float>(Tensor<float>::zeros({1, 1, 40, 48})), mask),
                      Catch::Contains("images must be [B, 3, H, W]"));
  REQUIRE_THROWS_WITH(m.forward(images, Tensor<uint8_t>::zeros({1, 40, 40})),
                      Catch::Contains("mask must be [B, H, W] = [1, 40, 48]"));
  REQUIRE_THROWS_WITH(m.forward(images, Tensor<uint8_t>::zeros({2, 40, 48})),
                      Catch::Contains("mask must be [B, H, W]"));
}

// The reference batch pads its second image; under forward_per_image that image's detections
// are those it gets alone (the batched forward differs: the ResNet's edges and the input
// projections' GroupNorm see the padding).
TEST_CASE("DeformableDetr detections do not change with padding under forward_per_image", "[deformable_detr][padding]") {
  const auto& ref = reference("deformable_detr");
  TwoStage m;
  Rng rng(0);
  m.init(rng);
  load_state_dict(m, reference("deformable_detr_two_stage_weights"));
  eval(m);
  NoGrad no_grad;
  const Tensor<float> batch_images = ref.get<float>("images");
  const Tensor<uint8_t> batch_mask = ref.get<uint8_t>("mask");
  const auto [h, w] = unpadded_extent(batch_mask, 1);
  REQUIRE((h < batch_mask.dim(1) || w < batch_mask.dim(2)));  // the test needs a padded image
  const auto single = m.forward(slice(slice(slice(Var<float>(batch_images), 0, 1, 2), 2, 0, h), 3, 0, w),
                                Tensor<uint8_t>::zeros({1, h, w}));
  auto max_diff = [&](const DetectorOutput<float>& batched) {
    double d = 0;
    for (size_t l = 0; l < single.layers.size(); ++l)
      for (auto [a, s] : {std::pair{&batched.layers[l].logits, &single.layers[l].logits},
                          std::pair{&batched.layers[l].boxes, &single.layers[l].boxes}}) {
        REQUIRE(a->dim(0) == 2);
        for (int64_t i = 0; i < s->numel(); ++i)
          d = std::max(d, double(std::abs(a->value()[1].data()[i] - s->value().data()[i])));
      }
    return d;
  };
  const auto per_image = forward_per_image(m, Var<float>(batch_images), batch_mask);
  REQUIRE(!per_image.encoder);  // a different number of proposals per image: not stacked
  const double leaky = max_diff(m.forward(Var<float>(batch_images), batch_mask));
  const double invariant = max_diff(per_image);
  INFO("max |difference| of logits and boxes: batched " << leaky << ", per image " << invariant);
  CHECK(leaky > 1e-3);
  REQUIRE(invariant < 2e-5);
}
