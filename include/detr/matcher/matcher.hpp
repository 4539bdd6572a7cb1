#pragma once
// HungarianMatcher: the bipartite matching of DETR (facebookresearch/detr models/matcher.py)
// and of Deformable DETR / DINO (focal-loss class cost). Each image is matched on its own
// [queries x that image's targets] cost block (images in parallel threads when they are big
// enough), without autograd.
// A non-finite cost is an error naming the image, the query and the target (the reference
// crashes inside scipy or silently mismatches on these).
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "detr/core/parallel.hpp"
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
    // Images in parallel only when each is worth a thread: an image of Q x (C + T) < 2^16
    // (DETR's 300 x (92 + 20) included) is matched in some 30-60 us, while a fork/join costs a
    // few us and, on a busy machine, waiting for a descheduled worker costs milliseconds.
    int64_t largest = 0;
    for (const auto& t : targets) largest = std::max(largest, logits.dim(1) * (C + t.size()));
    const bool parallel = B > 1 && largest >= (int64_t(1) << 16);
    parallel_for_if(parallel, B, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        try {
          out[b] = match_image(logits[b], boxes[b], targets[b], b);
        } catch (...) {
          errors[b] = std::current_exception();
        }
      }
    });
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    return out;
  }

  // The cost block of one image: [Q, T] (exposed for tests and tools).
  Tensor<T> cost_matrix(const Tensor<T>& logits, const Tensor<T>& boxes, const BoxTarget<T>& tgt, int64_t image) const {
    const int64_t Q = logits.dim(0), NT = tgt.size();
    auto cost = Tensor<T>::empty({Q, NT});
    if (NT == 0) return cost;
    const double* c = target_major_costs(logits, boxes, tgt, image);
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t j = 0; j < NT; ++j) cost.data()[q * NT + j] = T(c[j * Q + q]);
    return cost;
  }

 private:
  // Per-thread buffers, reused from image to image.
  struct Scratch {
    std::vector<T> exp_logits;  // [Q, C] exp(logit - max of its row)
    std::vector<T> row_sum;     // [Q]
    std::vector<T> pred;        // [9, Q]: cx, cy, w, h, x0, y0, x1, y1, area of each query's box
    std::vector<T> target;      // [9, T]: the same of each target's box
    std::vector<T> class_cost;  // [T, Q]
    std::vector<double> cost;   // [T, Q]
  };
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }

  // boxes [N, 4] cxcywh -> out [9, N]: cx, cy, w, h, x0, y0, x1, y1, area (box_cxcywh_to_xyxy,
  // box_area); a degenerate box is the error generalized_box_iou reports.
  static void box_columns(const Tensor<T>& boxes, T* __restrict out, const std::string& where, const char* which) {
    const int64_t N = boxes.dim(0);
    const T* __restrict b = boxes.data();
    int ok = 1;
#pragma omp simd reduction(& : ok)
    for (int64_t n = 0; n < N; ++n) {
      const T cx = b[4 * n], cy = b[4 * n + 1], w = b[4 * n + 2], h = b[4 * n + 3];
      const T x0 = cx - T(0.5) * w, y0 = cy - T(0.5) * h, x1 = cx + T(0.5) * w, y1 = cy + T(0.5) * h;
      out[n] = cx, out[N + n] = cy, out[2 * N + n] = w, out[3 * N + n] = h;
      out[4 * N + n] = x0, out[5 * N + n] = y0, out[6 * N + n] = x1, out[7 * N + n] = y1;
      out[8 * N + n] = (x1 - x0) * (y1 - y0);
      ok &= int(x1 >= x0) & int(y1 >= y0);  // false for NaN too
    }
    if (!ok)
      internal::check_not_degenerate(box_cxcywh_to_xyxy(Var<T>(boxes)).value(), "generalized_box_iou", where + " " + which);
  }

  // The costs of one image, target-major ([T, Q], the orientation scipy solves a tall block in)
  // so that every loop runs over the queries, contiguous and vectorised. Entries are computed in
  // T as the reference computes them in float and handed to the assignment as doubles.
  const double* target_major_costs(const Tensor<T>& logits, const Tensor<T>& boxes, const BoxTarget<T>& tgt,
                                   int64_t image) const {
    const int64_t Q = logits.dim(0), C = logits.dim(1), NT = tgt.size();
    const int64_t* labels = tgt.labels.data();
    Scratch& s = scratch();
    s.class_cost.resize(size_t(NT * Q));
    T* __restrict cls = s.class_cost.data();
    if (cfg_.class_cost == ClassCost::softmax) {
      // -softmax(logits)[label], rows shifted by their max as torch's softmax does. Eigen's
      // fixed-size arrays are the vectors (exp, max, sum); a row's last vector overlaps the
      // one before (harmless for max and exp; its repeated lanes are masked out of the sum).
      constexpr int64_t W = 64 / sizeof(T);
      using Vec = Eigen::Array<T, W, 1>;
      const int64_t whole = C / W * W;
      Vec last_lanes;
      for (int64_t k = 0; k < W; ++k) last_lanes[k] = C - W + k >= whole ? T(1) : T(0);
      s.exp_logits.resize(size_t(Q * C));
      s.row_sum.resize(size_t(Q));
      T* __restrict e = s.exp_logits.data();
      T* __restrict sum = s.row_sum.data();
      for (int64_t q = 0; q < Q; ++q) {
        const T* l = logits.data() + q * C;
        T* eq = e + q * C;
        if (C >= W) {
          Vec m = Vec::Map(l);
          for (int64_t c = W; c < C; c += W) m = m.max(Vec::Map(l + std::min(c, C - W)));
          const T mx = m.maxCoeff();
          Vec total = Vec::Zero();
          for (int64_t c = 0; c < whole; c += W) {
            const Vec x = (Vec::Map(l + c) - mx).exp();
            Vec::Map(eq + c) = x;
            total += x;
          }
          if (whole < C) {
            const Vec x = (Vec::Map(l + C - W) - mx).exp();
            Vec::Map(eq + C - W) = x;
            total += x * last_lanes;
          }
          sum[q] = total.sum();
        } else {
          T mx = l[0], total = 0;
          for (int64_t c = 1; c < C; ++c) mx = std::max(mx, l[c]);
          for (int64_t c = 0; c < C; ++c) total += eq[c] = std::exp(l[c] - mx);
          sum[q] = total;
        }
        for (int64_t j = 0; j < NT; ++j) cls[j * Q + q] = eq[labels[j]];
      }
      for (int64_t j = 0; j < NT; ++j)
#pragma omp simd
        for (int64_t q = 0; q < Q; ++q) cls[j * Q + q] = -(cls[j * Q + q] / sum[q]);
    } else {
      // Focal cost on sigmoid(logits)[label], only for the targets' labels.
      const T alpha = T(cfg_.focal_alpha), gamma = T(cfg_.focal_gamma);
      for (int64_t j = 0; j < NT; ++j)
        for (int64_t q = 0; q < Q; ++q) {
          const T p = T(1) / (T(1) + std::exp(-logits.data()[q * C + labels[j]]));
          const T neg = (T(1) - alpha) * std::pow(p, gamma) * -std::log(T(1) - p + T(1e-8));
          const T pos = alpha * std::pow(T(1) - p, gamma) * -std::log(p + T(1e-8));
          cls[j * Q + q] = pos - neg;
        }
    }
    const std::string where = "image " + std::to_string(image);
    s.pred.resize(size_t(9 * Q));
    s.target.resize(size_t(9 * NT));
    box_columns(boxes, s.pred.data(), where, "predicted boxes");
    box_columns(tgt.boxes, s.target.data(), where, "target boxes");
    const T* __restrict pr = s.pred.data();
    const T *pcx = pr, *pcy = pr + Q, *pw = pr + 2 * Q, *ph = pr + 3 * Q, *px0 = pr + 4 * Q, *py0 = pr + 5 * Q,
            *px1 = pr + 6 * Q, *py1 = pr + 7 * Q, *parea = pr + 8 * Q;
    // cost_bbox * L1(cxcywh) + cost_class * class + cost_giou * -GIoU, GIoU as generalized_box_iou.
    s.cost.resize(size_t(NT * Q));
    double* __restrict out = s.cost.data();
    const T wb = T(cfg_.cost_bbox), wc = T(cfg_.cost_class), wg = T(cfg_.cost_giou);
    const T big = std::numeric_limits<T>::max();
    int finite = 1;
    for (int64_t j = 0; j < NT; ++j) {
      T tb[4], tx[4];
      for (int k = 0; k < 4; ++k) tb[k] = s.target[size_t(k * NT + j)], tx[k] = s.target[size_t((4 + k) * NT + j)];
      const T area_b = s.target[size_t(8 * NT + j)];
      const T* __restrict cj = cls + j * Q;
#pragma omp simd reduction(& : finite)
      for (int64_t q = 0; q < Q; ++q) {
        const T iw = std::max(std::min(px1[q], tx[2]) - std::max(px0[q], tx[0]), T(0));
        const T ih = std::max(std::min(py1[q], tx[3]) - std::max(py0[q], tx[1]), T(0));
        const T inter = iw * ih, uni = parea[q] + area_b - inter;
        const T ew = std::max(std::max(px1[q], tx[2]) - std::min(px0[q], tx[0]), T(0));
        const T eh = std::max(std::max(py1[q], tx[3]) - std::min(py0[q], tx[1]), T(0));
        const T enclose = ew * eh, iou = inter / uni;
        const T giou = iou - (enclose - uni) / enclose;
        const T l1 = std::abs(pcx[q] - tb[0]) + std::abs(pcy[q] - tb[1]) + std::abs(pw[q] - tb[2]) + std::abs(ph[q] - tb[3]);
        const T c = wb * l1 + wc * cj[q] + wg * -giou;
        finite &= std::abs(c) <= big;  // false for inf and NaN
        out[j * Q + q] = double(c);
      }
    }
    if (!finite)
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t j = 0; j < NT; ++j)
          DETR_CHECK(std::isfinite(out[j * Q + q]), "HungarianMatcher: " << where << ": cost of query " << q << " for target " << j
                                                                         << " is " << T(out[j * Q + q])
                                                                         << " (non-finite logits or boxes?)");
    return out;
  }

  MatchIndices match_image(const Tensor<T>& logits, const Tensor<T>& boxes, const BoxTarget<T>& tgt, int64_t image) const {
    MatchIndices m;
    const int64_t Q = logits.dim(0), NT = tgt.size();
    if (NT == 0) return m;
    const double* cost = target_major_costs(logits, boxes, tgt, image);
    // scipy augments over the shorter side: the targets when there are fewer of them (our
    // [T, Q] rows, transposed w.r.t. its [Q, T]), else the queries (our columns).
    const std::string what = "image " + std::to_string(image);
    Assignment a = NT < Q ? internal::solve_oriented(cost, Q, 1, NT, Q, true, what)
                          : internal::solve_oriented(cost, 1, Q, Q, NT, false, what);
    m.query = std::move(a.rows);
    m.target = std::move(a.cols);
    return m;
  }

  MatcherConfig cfg_;
};

}  // namespace detr
