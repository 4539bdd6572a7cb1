#pragma once
// HungarianMatcher: the bipartite matching of DETR (facebookresearch/detr models/matcher.py)
// and of Deformable DETR / DINO (focal-loss class cost). Each image is matched on its own
// [queries x that image's targets] cost block, images in parallel threads, without autograd.
// A non-finite cost is an error naming the image, the query and the target (the reference
// crashes inside scipy or silently mismatches on these).
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "detr/core/tensor.hpp"
#include "detr/matcher/hungarian.hpp"
#include "detr/ops/box.hpp"

namespace detr {

// What matching needs of one image's ground truth: labels [T] in [0, num_classes) and boxes
// [T, 4] normalised cxcywh (the labels and boxes of a normalised data Target, data/target.hpp).
template <class T>
struct BoxTarget {
  Tensor<int64_t> labels;  // [T]
  Tensor<T> boxes;         // [T, 4]
  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

enum class ClassCost {
  softmax,  // DETR: -softmax(logits)[label], logits [.., num_classes + 1]
  focal,    // Deformable DETR / DINO: focal-loss cost on sigmoid(logits), logits [.., num_classes]
};

struct MatcherConfig {
  double cost_class = 1.0;
  double cost_bbox = 5.0;
  double cost_giou = 2.0;
  ClassCost class_cost = ClassCost::softmax;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
};

// Matched (query, target) pairs of one image, sorted by query as scipy returns them.
struct MatchIndices {
  std::vector<int64_t> query;
  std::vector<int64_t> target;
  int64_t size() const { return int64_t(query.size()); }
};

namespace internal {
template <class T>
void check_targets(const std::vector<BoxTarget<T>>& targets, int64_t B, int64_t num_classes, const char* who) {
  DETR_CHECK(int64_t(targets.size()) == B, who << ": " << targets.size() << " targets for a batch of " << B << " images");
  for (int64_t b = 0; b < B; ++b) {
    const BoxTarget<T>& t = targets[b];
    const int64_t n = t.size();
    DETR_CHECK((n == 0 && (!t.boxes.defined() || t.boxes.numel() == 0)) ||
                   (t.labels.rank() == 1 && t.boxes.shape() == (Shape{n, 4})),
               who << ": image " << b << " has labels " << (t.labels.defined() ? t.labels.shape().str() : "[]")
                   << " and boxes " << (t.boxes.defined() ? t.boxes.shape().str() : "[]") << "; expected [T] and [T, 4]");
    for (int64_t j = 0; j < n; ++j)
      DETR_CHECK(t.labels.data()[j] >= 0 && t.labels.data()[j] < num_classes,
                 who << ": image " << b << " target " << j << " has label " << t.labels.data()[j]
                     << ", expected 0 <= label < " << num_classes);
  }
}
}  // namespace internal

template <class T = float>
class HungarianMatcher {
 public:
  explicit HungarianMatcher(MatcherConfig cfg = {}) : cfg_(cfg) {
    DETR_CHECK(cfg.cost_class != 0 || cfg.cost_bbox != 0 || cfg.cost_giou != 0, "HungarianMatcher: all costs are 0");
  }
  const MatcherConfig& config() const { return cfg_; }

  // logits [B, Q, C] (C = num_classes + 1 for softmax, num_classes for focal), boxes [B, Q, 4]
  // normalised cxcywh -> per image matched pairs.
  std::vector<MatchIndices> operator()(const Tensor<T>& logits, const Tensor<T>& boxes,
                                       const std::vector<BoxTarget<T>>& targets) const {
    DETR_CHECK(logits.rank() == 3 && boxes.rank() == 3 && boxes.dim(2) == 4 && boxes.dim(0) == logits.dim(0) &&
                   boxes.dim(1) == logits.dim(1),
               "HungarianMatcher: logits must be [B, Q, C] and boxes [B, Q, 4], got " << logits.shape() << " and " << boxes.shape());
    const int64_t B = logits.dim(0), C = logits.dim(2);
    const int64_t num_classes = cfg_.class_cost == ClassCost::softmax ? C - 1 : C;
    internal::check_targets(targets, B, num_classes, "HungarianMatcher");
    std::vector<MatchIndices> out(B);
    std::vector<std::exception_ptr> errors(B);
#pragma omp parallel for schedule(dynamic) if (B > 1)
    for (int64_t b = 0; b < B; ++b) {
      try {
        out[b] = match_image(logits[b], boxes[b], targets[b], b);
      } catch (...) {
        errors[b] = std::current_exception();
      }
    }
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    return out;
  }

  // The cost block of one image: [Q, T] (exposed for tests and tools).
  Tensor<T> cost_matrix(const Tensor<T>& logits, const Tensor<T>& boxes, const BoxTarget<T>& tgt, int64_t image) const {
    const int64_t Q = logits.dim(0), C = logits.dim(1), NT = tgt.size();
    auto cost = Tensor<T>::empty({Q, NT});
    if (NT == 0) return cost;
    // Class probabilities of each query, as the reference computes them in float; the softmax
    // uses Eigen's vectorised exp, the sigmoid is only needed for the targets' labels.
    auto prob = Tensor<T>::empty({Q, C});
    for (int64_t q = 0; q < Q; ++q) {
      Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> l(logits.data() + q * C, C);
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> p(prob.data() + q * C, C);
      if (cfg_.class_cost == ClassCost::softmax) {
        p = (l - l.maxCoeff()).exp();
        p /= p.sum();
      } else {
        for (int64_t j = 0; j < NT; ++j) {
          const int64_t c = tgt.labels.data()[j];
          p[c] = T(1) / (T(1) + std::exp(-l[c]));
        }
      }
    }
    auto pred_xyxy = box_cxcywh_to_xyxy(Var<T>(boxes)).value();
    auto tgt_xyxy = box_cxcywh_to_xyxy(Var<T>(tgt.boxes)).value();
    const std::string where = "image " + std::to_string(image);
    auto giou = generalized_box_iou(pred_xyxy, tgt_xyxy, where + " predicted boxes", where + " target boxes");
    const T alpha = T(cfg_.focal_alpha), gamma = T(cfg_.focal_gamma);
    for (int64_t q = 0; q < Q; ++q) {
      const T* pb = boxes.data() + 4 * q;
      for (int64_t j = 0; j < NT; ++j) {
        const int64_t label = tgt.labels.data()[j];
        const T p = prob.data()[q * C + label];
        T class_cost;
        if (cfg_.class_cost == ClassCost::softmax) {
          class_cost = -p;
        } else {
          T neg = (T(1) - alpha) * std::pow(p, gamma) * -std::log(T(1) - p + T(1e-8));
          T pos = alpha * std::pow(T(1) - p, gamma) * -std::log(p + T(1e-8));
          class_cost = pos - neg;
        }
        const T* tb = tgt.boxes.data() + 4 * j;
        T l1 = std::abs(pb[0] - tb[0]) + std::abs(pb[1] - tb[1]) + std::abs(pb[2] - tb[2]) + std::abs(pb[3] - tb[3]);
        T c = T(cfg_.cost_bbox) * l1 + T(cfg_.cost_class) * class_cost + T(cfg_.cost_giou) * -giou.data()[q * NT + j];
        DETR_CHECK(std::isfinite(c), "HungarianMatcher: " << where << ": cost of query " << q << " for target " << j
                                                          << " is " << c << " (non-finite logits or boxes?)");
        cost.data()[q * NT + j] = c;
      }
    }
    return cost;
  }

 private:
  MatchIndices match_image(const Tensor<T>& logits, const Tensor<T>& boxes, const BoxTarget<T>& tgt, int64_t image) const {
    MatchIndices m;
    if (tgt.size() == 0) return m;
    auto cost = cost_matrix(logits, boxes, tgt, image).template cast<double>();
    auto a = linear_sum_assignment(cost.data(), cost.dim(0), cost.dim(1), "image " + std::to_string(image));
    m.query = std::move(a.rows);
    m.target = std::move(a.cols);
    return m;
  }

  MatcherConfig cfg_;
};

}  // namespace detr
