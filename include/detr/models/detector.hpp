#pragma once
// What every detector of the family shares: its typed output, the `Detector` concept the
// train / evaluate / detect binaries are written against, and the glue from a data batch to
// what the matcher and the post-processors take.
//
//   DetectorOutput out = model.forward(images, mask);        // every decoder layer's predictions
//   Losses losses = criterion(out.layers, box_targets(batch.targets), out.encoder_ptr());
//   auto dets = postprocess(model, out.final(), sizes);       // softmax or top-k, as the model's
//                                                             // class loss implies
#include <concepts>
#include <optional>
#include <string>
#include <vector>

#include "detr/data/target.hpp"
#include "detr/eval/postprocess.hpp"
#include "detr/loss/set_criterion.hpp"
#include "detr/nn/module.hpp"
#include "detr/optim/optimizer.hpp"

namespace detr {

template <class T>
struct DetectorOutput {
  // Every decoder layer's predictions, auxiliary layers first; back() is the model's answer.
  // logits [B, Q, C] (C = num_classes + 1 for softmax models, num_classes for focal ones),
  // boxes [B, Q, 4] normalised cxcywh in (0, 1).
  std::vector<Predictions<T>> layers;
  // Two-stage models: the encoder's proposals, class-agnostic as the criterion scores them
  // (logits [B, HW_all, num_classes] of which the criterion uses class 0, boxes [B, HW_all, 4]).
  std::optional<Predictions<T>> encoder;

  const Predictions<T>& final() const { return layers.back(); }
  const Predictions<T>* encoder_ptr() const { return encoder ? &*encoder : nullptr; }
};

/// A detector: a Module with a forward from padded images to typed predictions, plus the loss
/// and matcher settings its reference trains it with.
///   images [B, 3, H, W] normalised, mask [B, H, W] with 1 on padding.
template <class M>
concept Detector = Module<M> && requires(M& m, const Var<typename M::Scalar>& images, const Tensor<uint8_t>& mask) {
  { M::num_classes } -> std::convertible_to<int>;
  { M::num_queries } -> std::convertible_to<int>;
  { M::criterion_config() } -> std::same_as<CriterionConfig>;
  { M::matcher_config() } -> std::same_as<MatcherConfig>;
  { m.forward(images, mask) } -> std::same_as<DetectorOutput<typename M::Scalar>>;
};

// The matcher's view of a batch's targets: labels and normalised cxcywh boxes per image.
template <class T = float>
std::vector<BoxTarget<T>> box_targets(const std::vector<Target>& targets) {
  std::vector<BoxTarget<T>> out;
  out.reserve(targets.size());
  for (size_t b = 0; b < targets.size(); ++b) {
    const Target& t = targets[b];
    const int64_t n = t.num_objects();
    DETR_CHECK(n == 0 || t.normalized,
               "box_targets: image " << b << " (image id " << t.image_id
                                     << ") has unnormalised boxes; apply the final normalize transform first");
    BoxTarget<T> bt;
    bt.labels = n ? t.labels.clone() : Tensor<int64_t>::empty({0});
    bt.boxes = Tensor<T>::empty({n, 4});
    for (int64_t i = 0; i < 4 * n; ++i) {
      const float v = t.boxes.data()[i];
      DETR_CHECK(std::isfinite(v), "box_targets: image " << b << " (image id " << t.image_id << ") box " << i / 4
                                                         << " has a non-finite coordinate " << v);
      bt.boxes.data()[i] = T(v);
    }
    out.push_back(std::move(bt));
  }
  return out;
}

// Post-processing as the model's reference does it: DETR's softmax (best non-background class
// per query) or Deformable DETR's sigmoid top-k over queries x classes.
template <Detector M, class T>
std::vector<ImageDetections<T>> postprocess(const Predictions<T>& p, const std::vector<ImageSize>& sizes,
                                            int64_t top_k = 100) {
  if (M::criterion_config().class_loss == ClassLoss::focal)
    return postprocess_topk(p.logits.value(), p.boxes.value(), sizes, top_k);
  return postprocess_softmax(p.logits.value(), p.boxes.value(), sizes);
}

// The references' optimiser groups: the backbone at lr_backbone, the deformable sampling
// offsets and reference-point heads at lr * lr_linear_proj_mult (Deformable DETR's
// lr_linear_proj_names), everything else at lr. Frozen parameters are left out.
template <Module M>
std::vector<ParamGroupSpec<typename M::Scalar>> detector_param_groups(M& model, double lr, double lr_backbone,
                                                                      double lr_linear_proj_mult = 0.1) {
  using T = typename M::Scalar;
  ParamGroupSpec<T> main, backbone, linear_proj;
  main.lr = lr;
  backbone.lr = lr_backbone;
  linear_proj.lr = lr * lr_linear_proj_mult;
  for (auto& p : named_parameters(model)) {
    if (!p.var->requires_grad()) continue;
    const bool is_backbone = p.name.rfind("backbone.", 0) == 0;
    const bool is_linear_proj = p.name.find("sampling_offsets") != std::string::npos ||
                                p.name.find("reference_points") != std::string::npos;
    (is_backbone ? backbone : is_linear_proj ? linear_proj : main).params.push_back(p);
  }
  std::vector<ParamGroupSpec<T>> groups;
  for (auto* g : {&main, &backbone, &linear_proj})
    if (!g->params.empty()) groups.push_back(std::move(*g));
  return groups;
}

}  // namespace detr
