#pragma once
// Post-processing: a detector's normalised outputs to scored, labelled boxes in pixels of the
// original images, as the reference PostProcess modules do:
//   postprocess_softmax  DETR: softmax, best non-background class per query, every query kept
//   postprocess_topk     Deformable DETR / DINO: sigmoid, top-k over queries x classes
// and to_coco(), which turns them into COCO results for the evaluator.
#include <vector>

#include "detr/autograd/var.hpp"
#include "detr/data/coco.hpp"
#include "detr/eval/detections.hpp"
#include "detr/ops/indexing.hpp"

namespace detr {

template <class T>
struct ImageDetections {
  Tensor<T> scores;        // [K]
  Tensor<int64_t> labels;  // [K] contiguous labels in [0, num_classes)
  Tensor<T> boxes;         // [K, 4] x0, y0, x1, y1 in pixels
};

struct ImageSize {
  int64_t height, width;
};

namespace internal {
template <class T>
void check_outputs(const Tensor<T>& logits, const Tensor<T>& boxes, const std::vector<ImageSize>& sizes, const char* who) {
  DETR_CHECK(logits.rank() == 3 && boxes.shape() == (Shape{logits.dim(0), logits.dim(1), 4}),
             who << ": logits must be [B, Q, C] and boxes [B, Q, 4], got " << logits.shape() << " and " << boxes.shape());
  DETR_CHECK(int64_t(sizes.size()) == logits.dim(0), who << ": " << sizes.size() << " image sizes for a batch of " << logits.dim(0));
}
// Normalised cxcywh of query q -> pixel xyxy.
template <class T>
void to_pixels(const T* b, const ImageSize& s, T* out) {
  const T w = T(s.width), h = T(s.height);
  out[0] = (b[0] - T(0.5) * b[2]) * w;
  out[1] = (b[1] - T(0.5) * b[3]) * h;
  out[2] = (b[0] + T(0.5) * b[2]) * w;
  out[3] = (b[1] + T(0.5) * b[3]) * h;
}
}  // namespace internal

// logits [B, Q, C + 1] (last = no object), boxes [B, Q, 4] normalised cxcywh -> Q per image
template <class T>
std::vector<ImageDetections<T>> postprocess_softmax(const Tensor<T>& logits, const Tensor<T>& boxes,
                                                    const std::vector<ImageSize>& sizes) {
  internal::check_outputs(logits, boxes, sizes, "postprocess_softmax");
  const int64_t B = logits.dim(0), Q = logits.dim(1), C = logits.dim(2);
  std::vector<ImageDetections<T>> out(B);
  for (int64_t b = 0; b < B; ++b) {
    auto& d = out[b];
    d.scores = Tensor<T>::empty({Q});
    d.labels = Tensor<int64_t>::empty({Q});
    d.boxes = Tensor<T>::empty({Q, 4});
    for (int64_t q = 0; q < Q; ++q) {
      const T* l = logits.data() + (b * Q + q) * C;
      T m = *std::max_element(l, l + C), s = 0;
      for (int64_t c = 0; c < C; ++c) s += std::exp(l[c] - m);
      const int64_t best = std::max_element(l, l + C - 1) - l;  // first maximum, as torch.max
      d.scores.data()[q] = std::exp(l[best] - m) / s;
      d.labels.data()[q] = best;
      internal::to_pixels(boxes.data() + (b * Q + q) * 4, sizes[b], d.boxes.data() + 4 * q);
    }
  }
  return out;
}

// logits [B, Q, C], boxes [B, Q, 4] normalised cxcywh -> the k best (query, class) pairs per image
template <class T>
std::vector<ImageDetections<T>> postprocess_topk(const Tensor<T>& logits, const Tensor<T>& boxes,
                                                 const std::vector<ImageSize>& sizes, int64_t k = 100) {
  internal::check_outputs(logits, boxes, sizes, "postprocess_topk");
  const int64_t B = logits.dim(0), Q = logits.dim(1), C = logits.dim(2);
  DETR_CHECK(k >= 1 && k <= Q * C, "postprocess_topk: k = " << k << " must be in [1, " << Q * C << "] (queries x classes)");
  auto prob = Tensor<T>::empty({B, Q * C});
  for (int64_t i = 0; i < prob.numel(); ++i) prob.data()[i] = T(1) / (T(1) + std::exp(-logits.data()[i]));
  NoGrad no_grad;
  TopK<T> best = topk(Var<T>(prob), k, -1);  // torch.topk's order, ties included
  std::vector<ImageDetections<T>> out(B);
  for (int64_t b = 0; b < B; ++b) {
    auto& d = out[b];
    d.scores = best.values.value()[b].clone();
    d.labels = Tensor<int64_t>::empty({k});
    d.boxes = Tensor<T>::empty({k, 4});
    for (int64_t i = 0; i < k; ++i) {
      const int64_t flat = best.indices.data()[b * k + i], q = flat / C;
      d.labels.data()[i] = flat % C;
      internal::to_pixels(boxes.data() + (b * Q + q) * 4, sizes[b], d.boxes.data() + 4 * i);
    }
  }
  return out;
}

// COCO results ({image_id, category_id, bbox xywh, score}) for one image's detections.
template <class T>
std::vector<Detection> to_coco(const ImageDetections<T>& d, int64_t image_id, const CocoDataset& dataset) {
  std::vector<Detection> out;
  out.reserve(size_t(d.scores.numel()));
  for (int64_t i = 0; i < d.scores.numel(); ++i) {
    const T* b = d.boxes.data() + 4 * i;
    out.push_back({image_id, dataset.category_id_of(d.labels.data()[i]),
                   {double(b[0]), double(b[1]), double(b[2] - b[0]), double(b[3] - b[1])}, double(d.scores.data()[i])});
  }
  return out;
}

}  // namespace detr
