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

namespace {
// The reference's cost of query q for target j, term by term (matcher.py / box_ops.py), in double
// but for the focal term.
double reference_cost(const Tensor<float>& logits, const Tensor<float>& boxes, const BoxTarget<float>& t, int64_t q,
                      int64_t j, const MatcherConfig& mc) {
  const int64_t C = logits.dim(1), label = t.labels.data()[j];
  const float* l = logits.data() + q * C;
  double cls;
  if (mc.class_cost == ClassCost::softmax) {
    double mx = l[0], sum = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, double(l[c]));
    for (int64_t c = 0; c < C; ++c) sum += std::exp(l[c] - mx);
    cls = -std::exp(l[label] - mx) / sum;
  } else {
    // in float as the reference: log(p + 1e-8) of a small p is where float and double part
    const float p = 1 / (1 + std::exp(-l[label])), a = float(mc.focal_alpha), g = float(mc.focal_gamma);
    cls = a * std::pow(1 - p, g) * -std::log(p + 1e-8f) - (1 - a) * std::pow(p, g) * -std::log(1 - p + 1e-8f);
  }
  const float *a = boxes.data() + 4 * q, *b = t.boxes.data() + 4 * j;
  double l1 = 0, pa[4], pb[4];
  for (int k = 0; k < 4; ++k) l1 += std::abs(double(a[k]) - b[k]);
  for (int k = 0; k < 2; ++k) {
    pa[k] = a[k] - 0.5 * a[k + 2], pa[k + 2] = a[k] + 0.5 * a[k + 2];
    pb[k] = b[k] - 0.5 * b[k + 2], pb[k + 2] = b[k] + 0.5 * b[k + 2];
  }
  const double inter = std::max(std::min(pa[2], pb[2]) - std::max(pa[0], pb[0]), 0.0) *
                       std::max(std::min(pa[3], pb[3]) - std::max(pa[1], pb[1]), 0.0);
  const double uni = (pa[2] - pa[0]) * (pa[3] - pa[1]) + (pb[2] - pb[0]) * (pb[3] - pb[1]) - inter;
  const double enclose = (std::max(pa[2], pb[2]) - std::min(pa[0], pb[0])) * (std::max(pa[3], pb[3]) - std::min(pa[1], pb[1]));
  const double giou = inter / uni - (enclose - uni) / enclose;
  return mc.cost_bbox * l1 + mc.cost_class * cls - mc.cost_giou * giou;
}
}  // namespace

TEST_CASE("matcher costs follow the reference formulas; its matching is linear_sum_assignment of them", "[criterion]") {
  // Class counts below, at and off the 16-float vector width; fewer, as many and more targets
  // than queries (the assignment then augments over the queries); both class costs.
  Rng rng(5);
  for (int64_t C : {5, 16, 92})
    for (auto [Q, T] : {std::pair<int64_t, int64_t>{40, 7}, {6, 9}, {8, 8}})
      for (bool focal : {false, true}) {
        INFO("C " << C << " Q " << Q << " T " << T << (focal ? " focal" : " softmax"));
        MatcherConfig mc;
        if (focal) mc.class_cost = ClassCost::focal, mc.cost_class = 2.0;
        HungarianMatcher<float> matcher(mc);
        auto logits = rng.normal_tensor<float>({1, Q, C}, 0.0, 3.0);
        auto boxes = Tensor<float>::empty({1, Q, 4});
        BoxTarget<float> t{Tensor<int64_t>::empty({T}), Tensor<float>::empty({T, 4})};
        for (int64_t i = 0; i < Q + T; ++i) {
          float* b = i < Q ? boxes.data() + 4 * i : t.boxes.data() + 4 * (i - Q);
          b[0] = float(rng.uniform(0.2, 0.8)), b[1] = float(rng.uniform(0.2, 0.8));
          b[2] = float(rng.uniform(0.05, 0.4)), b[3] = float(rng.uniform(0.05, 0.4));
        }
        for (int64_t j = 0; j < T; ++j) t.labels.data()[j] = rng.randint(0, focal ? C - 1 : C - 2);
        const Tensor<float> cost = matcher.cost_matrix(logits[0], boxes[0], t, 0);
        REQUIRE(cost.shape() == (Shape{Q, T}));
        for (int64_t q = 0; q < Q; ++q)
          for (int64_t j = 0; j < T; ++j)
            REQUIRE(cost.data()[q * T + j] == Approx(reference_cost(logits[0], boxes[0], t, q, j, mc)).epsilon(1e-5).margin(1e-5));
        const std::vector<double> c64 = cost.cast<double>().to_vector();
        const Assignment want = linear_sum_assignment(c64.data(), Q, T);
        const MatchIndices got = matcher(logits, boxes, {t})[0];
        REQUIRE(got.query == want.rows);
        REQUIRE(got.target == want.cols);
      }
}
