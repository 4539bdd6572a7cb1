#pragma once
// Box ops with DETR's definitions (facebookresearch/detr util/box_ops.py): format conversion
// with gradients, pairwise IoU / generalized IoU for matching costs, and the element-wise GIoU
// with a hand-written backward for the loss. Degenerate boxes (x1 < x0 or y1 < y0) in a cost or
// loss are an error naming the tensor and the box index, as the reference asserts.
#include <algorithm>
#include <string>

#include "detr/autograd/var.hpp"

namespace detr {

namespace internal {
inline void check_boxes_shape(const Shape& s, const char* op, const std::string& name) {
  DETR_CHECK(s.rank() >= 1 && s.back() == 4, op << ": " << name << " must be [..., 4], got " << s);
}
// Every box x1 >= x0 and y1 >= y0 (and no NaN).
template <class T>
void check_not_degenerate(const Tensor<T>& xyxy, const char* op, const std::string& name) {
  const T* p = xyxy.data();
  for (int64_t i = 0; i < xyxy.numel() / 4; ++i) {
    const T* b = p + 4 * i;
    DETR_CHECK(b[2] >= b[0] && b[3] >= b[1], op << ": " << name << " box " << i << " is degenerate or NaN: (x0, y0, x1, y1) = ("
                                                << b[0] << ", " << b[1] << ", " << b[2] << ", " << b[3] << ")");
  }
}
// d min(a, b) routed as torch.minimum / maximum do: all to the smaller (larger), half each on ties.
template <class T>
DETR_HD inline void split_min(T a, T b, T g, T& ga, T& gb) {
  if (a < b) ga += g;
  else if (b < a) gb += g;
  else { ga += g / 2; gb += g / 2; }
}
}  // namespace internal

// [..., 4] (cx, cy, w, h) -> (x0, y0, x1, y1)
template <class T>
Var<T> box_cxcywh_to_xyxy(const Var<T>& b) {
  internal::check_boxes_shape(b.shape(), "box_cxcywh_to_xyxy", "boxes");
  auto out = Tensor<T>::empty(b.shape());
  const T* p = b.value().data();
  T* o = out.data();
  for (int64_t i = 0; i < b.numel(); i += 4) {
    o[i] = p[i] - T(0.5) * p[i + 2];
    o[i + 1] = p[i + 1] - T(0.5) * p[i + 3];
    o[i + 2] = p[i] + T(0.5) * p[i + 2];
    o[i + 3] = p[i + 1] + T(0.5) * p[i + 3];
  }
  return record("box_cxcywh_to_xyxy", out, {b}, [](const Tensor<T>& g, auto& in) {
    auto d = Tensor<T>::empty(g.shape());
    const T* pg = g.data();
    T* pd = d.data();
    for (int64_t i = 0; i < g.numel(); i += 4) {
      pd[i] = pg[i] + pg[i + 2];
      pd[i + 1] = pg[i + 1] + pg[i + 3];
      pd[i + 2] = T(0.5) * (pg[i + 2] - pg[i]);
      pd[i + 3] = T(0.5) * (pg[i + 3] - pg[i + 1]);
    }
    in.add(0, std::move(d));
  });
}

// [..., 4] (x0, y0, x1, y1) -> (cx, cy, w, h)
template <class T>
Var<T> box_xyxy_to_cxcywh(const Var<T>& b) {
  internal::check_boxes_shape(b.shape(), "box_xyxy_to_cxcywh", "boxes");
  auto out = Tensor<T>::empty(b.shape());
  const T* p = b.value().data();
  T* o = out.data();
  for (int64_t i = 0; i < b.numel(); i += 4) {
    o[i] = T(0.5) * (p[i] + p[i + 2]);
    o[i + 1] = T(0.5) * (p[i + 1] + p[i + 3]);
    o[i + 2] = p[i + 2] - p[i];
    o[i + 3] = p[i + 3] - p[i + 1];
  }
  return record("box_xyxy_to_cxcywh", out, {b}, [](const Tensor<T>& g, auto& in) {
    auto d = Tensor<T>::empty(g.shape());
    const T* pg = g.data();
    T* pd = d.data();
    for (int64_t i = 0; i < g.numel(); i += 4) {
      pd[i] = T(0.5) * pg[i] - pg[i + 2];
      pd[i + 1] = T(0.5) * pg[i + 1] - pg[i + 3];
      pd[i + 2] = T(0.5) * pg[i] + pg[i + 2];
      pd[i + 3] = T(0.5) * pg[i + 1] + pg[i + 3];
    }
    in.add(0, std::move(d));
  });
}

// [N, 4] xyxy -> [N]
template <class T>
Tensor<T> box_area(const Tensor<T>& b) {
  internal::check_boxes_shape(b.shape(), "box_area", "boxes");
  auto out = Tensor<T>::empty({b.numel() / 4});
  for (int64_t i = 0; i < out.numel(); ++i) {
    const T* p = b.data() + 4 * i;
    out.data()[i] = (p[2] - p[0]) * (p[3] - p[1]);
  }
  return out;
}

// Pairwise IoU and generalized IoU of a [N, 4] and b [M, 4] (xyxy) -> [N, M]; no gradient
// (used for matching costs). NaN-free inputs and non-degenerate boxes are checked.
template <class T>
Tensor<T> generalized_box_iou(const Tensor<T>& a, const Tensor<T>& b, const std::string& name_a = "boxes1",
                              const std::string& name_b = "boxes2", Tensor<T>* iou_out = nullptr) {
  DETR_CHECK(a.rank() == 2 && a.dim(1) == 4, "generalized_box_iou: " << name_a << " must be [N, 4], got " << a.shape());
  DETR_CHECK(b.rank() == 2 && b.dim(1) == 4, "generalized_box_iou: " << name_b << " must be [M, 4], got " << b.shape());
  internal::check_not_degenerate(a, "generalized_box_iou", name_a);
  internal::check_not_degenerate(b, "generalized_box_iou", name_b);
  const int64_t N = a.dim(0), M = b.dim(0);
  auto giou = Tensor<T>::empty({N, M});
  if (iou_out) *iou_out = Tensor<T>::empty({N, M});
  for (int64_t i = 0; i < N; ++i) {
    const T* p = a.data() + 4 * i;
    const T area_a = (p[2] - p[0]) * (p[3] - p[1]);
    for (int64_t j = 0; j < M; ++j) {
      const T* q = b.data() + 4 * j;
      const T area_b = (q[2] - q[0]) * (q[3] - q[1]);
      const T iw = std::max(std::min(p[2], q[2]) - std::max(p[0], q[0]), T(0));
      const T ih = std::max(std::min(p[3], q[3]) - std::max(p[1], q[1]), T(0));
      const T inter = iw * ih, uni = area_a + area_b - inter;
      const T ew = std::max(std::max(p[2], q[2]) - std::min(p[0], q[0]), T(0));
      const T eh = std::max(std::max(p[3], q[3]) - std::min(p[1], q[1]), T(0));
      const T enclose = ew * eh, iou = inter / uni;
      giou.data()[i * M + j] = iou - (enclose - uni) / enclose;
      if (iou_out) iou_out->data()[i * M + j] = iou;
    }
  }
  return giou;
}

// Element-wise generalized IoU of matched pairs a [N, 4], b [N, 4] (xyxy) -> [N], with
// gradients for both (DETR's loss_giou is 1 - this).
template <class T>
Var<T> generalized_box_iou_pairs(const Var<T>& a, const Var<T>& b) {
  DETR_CHECK(a.rank() == 2 && a.dim(1) == 4 && a.shape() == b.shape(),
             "generalized_box_iou_pairs: boxes must both be [N, 4], got " << a.shape() << " and " << b.shape());
  internal::check_not_degenerate(a.value(), "generalized_box_iou_pairs", "predicted boxes");
  internal::check_not_degenerate(b.value(), "generalized_box_iou_pairs", "target boxes");
  const int64_t N = a.dim(0);
  const Tensor<T> av = a.value(), bv = b.value();
  auto out = Tensor<T>::empty({N});
  for (int64_t i = 0; i < N; ++i) {
    const T *p = av.data() + 4 * i, *q = bv.data() + 4 * i;
    const T area_a = (p[2] - p[0]) * (p[3] - p[1]), area_b = (q[2] - q[0]) * (q[3] - q[1]);
    const T iw = std::max(std::min(p[2], q[2]) - std::max(p[0], q[0]), T(0));
    const T ih = std::max(std::min(p[3], q[3]) - std::max(p[1], q[1]), T(0));
    const T inter = iw * ih, uni = area_a + area_b - inter;
    const T ew = std::max(p[2], q[2]) - std::min(p[0], q[0]), eh = std::max(p[3], q[3]) - std::min(p[1], q[1]);
    const T enclose = ew * eh;
    out.data()[i] = inter / uni - (enclose - uni) / enclose;
  }
  return record("generalized_box_iou_pairs", out, {a, b}, [av, bv, N](const Tensor<T>& g, auto& in) {
    auto ga = Tensor<T>::zeros(av.shape()), gb = Tensor<T>::zeros(bv.shape());
    for (int64_t i = 0; i < N; ++i) {
      const T *p = av.data() + 4 * i, *q = bv.data() + 4 * i;
      T *dp = ga.data() + 4 * i, *dq = gb.data() + 4 * i;
      const T wa = p[2] - p[0], ha = p[3] - p[1], wb = q[2] - q[0], hb = q[3] - q[1];
      const T iw_raw = std::min(p[2], q[2]) - std::max(p[0], q[0]);
      const T ih_raw = std::min(p[3], q[3]) - std::max(p[1], q[1]);
      const T iw = std::max(iw_raw, T(0)), ih = std::max(ih_raw, T(0));
      const T inter = iw * ih, uni = wa * ha + wb * hb - inter;
      const T ew = std::max(p[2], q[2]) - std::min(p[0], q[0]), eh = std::max(p[3], q[3]) - std::min(p[1], q[1]);
      const T enclose = ew * eh;
      // giou = inter / uni - 1 + uni / enclose
      const T gi = g.data()[i];
      const T g_uni = gi * (-inter / (uni * uni) + T(1) / enclose);
      const T g_enclose = gi * (-uni / (enclose * enclose));
      const T g_inter = gi / uni - g_uni;
      // areas (through the union)
      dp[2] += g_uni * ha, dp[0] -= g_uni * ha, dp[3] += g_uni * wa, dp[1] -= g_uni * wa;
      dq[2] += g_uni * hb, dq[0] -= g_uni * hb, dq[3] += g_uni * wb, dq[1] -= g_uni * wb;
      // intersection: clamp(min(x1) - max(x0), 0) passes the gradient where the raw width >= 0
      const T g_iw = iw_raw >= T(0) ? g_inter * ih : T(0), g_ih = ih_raw >= T(0) ? g_inter * iw : T(0);
      internal::split_min(p[2], q[2], g_iw, dp[2], dq[2]);
      internal::split_min(-p[0], -q[0], -g_iw, dp[0], dq[0]);  // max(x0) as -min(-x0)
      internal::split_min(p[3], q[3], g_ih, dp[3], dq[3]);
      internal::split_min(-p[1], -q[1], -g_ih, dp[1], dq[1]);
      // enclosing box
      const T g_ew = g_enclose * eh, g_eh = g_enclose * ew;
      internal::split_min(-p[2], -q[2], g_ew, dp[2], dq[2]);  // max(x1) as -min(-x1): d/dx1 = +g
      internal::split_min(p[0], q[0], -g_ew, dp[0], dq[0]);
      internal::split_min(-p[3], -q[3], g_eh, dp[3], dq[3]);
      internal::split_min(p[1], q[1], -g_eh, dp[1], dq[1]);
    }
    in.add(0, std::move(ga));
    in.add(1, std::move(gb));
  });
}

}  // namespace detr
