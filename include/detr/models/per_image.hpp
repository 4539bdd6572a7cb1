#pragma once
// Inference that does not depend on the batch: each image of a padded batch runs through the
// detector alone, on its own pixels.
//
// The reference runs the padded batch through the whole model, and the padding leaks into an
// image's predictions: the ResNet's convolutions and batch norm see it at the right and bottom
// edges, the feature masks keep rows computed mostly from padding, and Deformable DETR's
// input_proj GroupNorm normalises over the padded map. An image's detections then change with
// the size of the largest image it is batched with. forward_per_image cuts each image to the
// extent its mask leaves unpadded, runs it as a batch of one and stacks the decoder layers'
// predictions, so an image gets the same detections whatever it is batched with (and no
// compute goes into padding).
//
//   DetectorOutput out = forward_per_image(model, batch_images(batch), batch.mask);
//
// The two-stage encoder proposals (one per feature position: a different count per image) are
// left out; they are a training signal that inference does not use.
#include <array>
#include <vector>

#include "detr/models/detector.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

// The unpadded extent (h, w) of image b of mask [B, H, W]: the mask must be 0 exactly on
// [0, h) x [0, w), as collate() pads.
inline std::array<int64_t, 2> unpadded_extent(const Tensor<uint8_t>& mask, int64_t b) {
  const int64_t H = mask.dim(1), W = mask.dim(2);
  const uint8_t* m = mask.data() + b * H * W;
  int64_t h = 0, w = 0;
  while (h < H && !m[h * W]) ++h;
  while (w < W && !m[w]) ++w;
  DETR_CHECK(h > 0 && w > 0, "forward_per_image: image " << b << " has no unpadded pixel (mask[" << b << "][0][0] = 1)");
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      DETR_CHECK(bool(m[y * W + x]) == (y >= h || x >= w),
                 "forward_per_image: image " << b << "'s mask is not a top-left " << h << " x " << w
                                             << " rectangle of zeros (pixel y " << y << ", x " << x << ")");
  return {h, w};
}

/// images [B, 3, H, W], mask [B, H, W] (1 = padding) -> every decoder layer's predictions
/// [B, Q, ...], each image computed alone; `encoder` is empty.
template <Detector M>
DetectorOutput<typename M::Scalar> forward_per_image(M& model, const Var<typename M::Scalar>& images,
                                                     const Tensor<uint8_t>& mask) {
  using T = typename M::Scalar;
  DETR_CHECK(images.defined() && images.rank() == 4 && mask.defined() && mask.rank() == 3 &&
                 mask.dim(0) == images.dim(0) && mask.dim(1) == images.dim(2) && mask.dim(2) == images.dim(3),
             "forward_per_image: mask " << (mask.defined() ? mask.shape().str() : std::string("undefined"))
                                        << " must be [B, H, W] of images "
                                        << (images.defined() ? images.shape().str() : std::string("undefined")));
  const int64_t B = images.dim(0);
  std::vector<DetectorOutput<T>> outs;
  outs.reserve(size_t(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto [h, w] = unpadded_extent(mask, b);
    Var<T> image = slice(slice(slice(images, 0, b, b + 1), 2, 0, h), 3, 0, w);  // [1, 3, h, w]
    outs.push_back(model.forward(image, Tensor<uint8_t>::zeros({1, h, w})));
  }
  DetectorOutput<T> out;
  for (size_t l = 0; l < outs[0].layers.size(); ++l) {
    std::vector<Var<T>> logits, boxes;
    for (const auto& o : outs) {
      logits.push_back(o.layers[l].logits);
      boxes.push_back(o.layers[l].boxes);
    }
    out.layers.push_back(Predictions<T>{concat(logits, 0), concat(boxes, 0)});
  }
  return out;
}

}  // namespace detr
