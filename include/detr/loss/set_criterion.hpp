#pragma once
// SetCriterion: DETR's set-prediction loss (facebookresearch/detr models/detr.py) and its
// Deformable DETR variant (sigmoid focal loss, two-stage encoder proposals). Every decoder layer
// is matched on its own and contributes labels, L1 and GIoU losses normalised by the number of
// target boxes; the result is a typed struct, not a string-keyed map.
#include <optional>
#include <vector>

#include "detr/matcher/matcher.hpp"
#include "detr/ops/box.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/indexing.hpp"
#include "detr/ops/loss.hpp"
#include "detr/ops/reduce.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

// One set of predictions: a decoder layer's output, or the two-stage encoder proposals.
template <class T>
struct Predictions {
  Var<T> logits;  // [B, Q, C]: C = num_classes + 1 (softmax, last = no object) or num_classes (focal)
  Var<T> boxes;   // [B, Q, 4] normalised cxcywh
};

enum class ClassLoss {
  cross_entropy,  // DETR: softmax cross-entropy with the no-object class weighted by eos_coef
  focal,          // Deformable DETR / DINO: sigmoid focal loss, normalised by num_boxes
};

struct CriterionConfig {
  int64_t num_classes = 91;
  ClassLoss class_loss = ClassLoss::cross_entropy;
  double eos_coef = 0.1;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
  double weight_ce = 1.0;  // Deformable DETR uses 2
  double weight_bbox = 5.0;
  double weight_giou = 2.0;
};

template <class T>
struct LayerLosses {
  Var<T> loss_ce;    // scalar
  Var<T> loss_bbox;  // scalar
  Var<T> loss_giou;  // scalar
  double cardinality_error = 0;  // logged, no gradient
  std::vector<MatchIndices> indices;
};

template <class T>
struct Losses {
  std::vector<LayerLosses<T>> layers;    // decoder layers in order; back() is the final output
  std::optional<LayerLosses<T>> encoder;  // two-stage proposals (class-agnostic targets)
  double class_error = 0;                 // final layer, percent (logged, no gradient)
  Var<T> total;                           // weighted sum of every loss above
  const LayerLosses<T>& final_layer() const { return layers.back(); }
};

template <class T = float>
class SetCriterion {
 public:
  SetCriterion(CriterionConfig cfg, HungarianMatcher<T> matcher) : cfg_(cfg), matcher_(std::move(matcher)) {
    DETR_CHECK(cfg.num_classes > 0, "SetCriterion: num_classes must be positive, got " << cfg.num_classes);
    bool focal_matcher = matcher_.config().class_cost == ClassCost::focal;
    DETR_CHECK(focal_matcher == (cfg.class_loss == ClassLoss::focal),
               "SetCriterion: the matcher's class cost and the class loss must both be softmax or both focal");
    empty_weight_ = Tensor<T>::ones({cfg.num_classes + 1});
    empty_weight_.data()[cfg.num_classes] = T(cfg.eos_coef);
  }

  // layers: every decoder layer's predictions (auxiliary first, final last).
  Losses<T> operator()(const std::vector<Predictions<T>>& layers, const std::vector<BoxTarget<T>>& targets,
                       const Predictions<T>* encoder = nullptr) const {
    DETR_CHECK(!layers.empty(), "SetCriterion: no predictions given");
    int64_t n = 0;
    for (const auto& t : targets) n += t.size();
    const double num_boxes = std::max<double>(double(n), 1.0);
    Losses<T> out;
    for (size_t l = 0; l < layers.size(); ++l) out.layers.push_back(layer_losses(layers[l], targets, num_boxes));
    out.class_error = class_error(layers.back(), targets, out.layers.back().indices);
    if (encoder) {
      std::vector<BoxTarget<T>> binary = targets;  // every object is class 0
      for (auto& t : binary) t.labels = Tensor<int64_t>::zeros(Shape{t.size()});
      out.encoder = layer_losses(*encoder, binary, num_boxes);
    }
    Var<T> total = weighted(out.layers[0]);
    for (size_t l = 1; l < out.layers.size(); ++l) total = total + weighted(out.layers[l]);
    if (out.encoder) total = total + weighted(*out.encoder);
    out.total = total;
    return out;
  }

  const CriterionConfig& config() const { return cfg_; }

 private:
  Var<T> weighted(const LayerLosses<T>& l) const {
    return l.loss_ce * cfg_.weight_ce + l.loss_bbox * cfg_.weight_bbox + l.loss_giou * cfg_.weight_giou;
  }

  void check(const Predictions<T>& p) const {
    const int64_t C = cfg_.class_loss == ClassLoss::focal ? cfg_.num_classes : cfg_.num_classes + 1;
    DETR_CHECK(p.logits.rank() == 3 && p.logits.dim(2) == C,
               "SetCriterion: logits must be [B, Q, " << C << "] for " << cfg_.num_classes << " classes"
                                                     << (cfg_.class_loss == ClassLoss::focal ? "" : " + no-object")
                                                     << ", got " << p.logits.shape());
    DETR_CHECK(p.boxes.shape() == (Shape{p.logits.dim(0), p.logits.dim(1), 4}),
               "SetCriterion: boxes must be [B, Q, 4] matching logits " << p.logits.shape() << ", got " << p.boxes.shape());
  }

  LayerLosses<T> layer_losses(const Predictions<T>& p, const std::vector<BoxTarget<T>>& targets, double num_boxes) const {
    check(p);
    const int64_t B = p.logits.dim(0), Q = p.logits.dim(1), C = p.logits.dim(2);
    LayerLosses<T> r;
    r.indices = matcher_(p.logits.value(), p.boxes.value(), targets);
    // Flat (b * Q + q) index of every matched query, its label and target box, image by image.
    std::vector<int64_t> flat, labels;
    std::vector<T> tgt_boxes;
    for (int64_t b = 0; b < B; ++b) {
      const auto& m = r.indices[b];
      for (int64_t k = 0; k < m.size(); ++k) {
        flat.push_back(b * Q + m.query[k]);
        labels.push_back(targets[b].labels.data()[m.target[k]]);
        const T* tb = targets[b].boxes.data() + 4 * m.target[k];
        tgt_boxes.insert(tgt_boxes.end(), tb, tb + 4);
      }
    }
    const int64_t M = int64_t(flat.size());
    // Labels.
    if (cfg_.class_loss == ClassLoss::cross_entropy) {
      auto target_classes = Tensor<int64_t>::full({B * Q}, cfg_.num_classes);
      for (int64_t k = 0; k < M; ++k) target_classes.data()[flat[k]] = labels[k];
      r.loss_ce = cross_entropy(reshape(p.logits, {B * Q, C}), target_classes, empty_weight_);
    } else {
      auto onehot = Tensor<T>::zeros({B, Q, C});
      for (int64_t k = 0; k < M; ++k) onehot.data()[flat[k] * C + labels[k]] = T(1);
      // Deformable DETR: loss.mean(1).sum() / num_boxes * Q, i.e. the sum over all / num_boxes.
      r.loss_ce = sum(sigmoid_focal_loss(p.logits, onehot, cfg_.focal_alpha, cfg_.focal_gamma)) / num_boxes;
    }
    // Boxes.
    if (M == 0) {  // nothing matched: both box losses are exactly 0 (an empty sum)
      r.loss_bbox = r.loss_giou = Var<T>(Tensor<T>::scalar(T(0)));
    } else {
      auto idx = Tensor<int64_t>::from({M}, flat);
      Var<T> src = index_select(reshape(p.boxes, {B * Q, 4}), 0, idx);  // [M, 4]
      Var<T> tgt(Tensor<T>::from({M, 4}, tgt_boxes));                    // [M, 4]
      r.loss_bbox = sum(abs(src - tgt)) / num_boxes;
      r.loss_giou = (double(M) - sum(generalized_box_iou_pairs(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt)))) / num_boxes;
    }
    // Cardinality: how many queries predict an object (argmax is not the last class) vs truth.
    const Tensor<T>& lv = p.logits.value();
    double card = 0;
    for (int64_t b = 0; b < B; ++b) {
      int64_t count = 0;
      for (int64_t q = 0; q < Q; ++q) {
        const T* row = lv.data() + (b * Q + q) * C;
        count += std::max_element(row, row + C) - row != C - 1;
      }
      card += std::abs(double(count - targets[b].size()));
    }
    r.cardinality_error = card / double(B);
    return r;
  }

  // 100 - top-1 accuracy (percent) of the matched queries' logits; 100 with no targets, as the reference.
  double class_error(const Predictions<T>& p, const std::vector<BoxTarget<T>>& targets, const std::vector<MatchIndices>& ind) const {
    const int64_t Q = p.logits.dim(1), C = p.logits.dim(2);
    int64_t total = 0, right = 0;
    for (size_t b = 0; b < ind.size(); ++b)
      for (int64_t k = 0; k < ind[b].size(); ++k) {
        const T* row = p.logits.value().data() + (int64_t(b) * Q + ind[b].query[k]) * C;
        right += std::max_element(row, row + C) - row == targets[b].labels.data()[ind[b].target[k]];
        ++total;
      }
    return total ? 100.0 - 100.0 * double(right) / double(total) : 100.0;
  }

  CriterionConfig cfg_;
  HungarianMatcher<T> matcher_;
  Tensor<T> empty_weight_;  // [num_classes + 1]: 1, ..., 1, eos_coef
};

}  // namespace detr
