#pragma once
// Batch: images of different sizes padded into one tensor, with a mask that is true on padding
// (the reference's NestedTensor from nested_tensor_from_tensor_list). Images sit in the
// top-left corner, padding is 0 (after normalisation, as the reference), so a model that
// honours the mask gives the same result for an image alone or batched with a larger one.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/core/tensor.hpp"
#include "detr/data/target.hpp"

namespace detr {

struct Batch {
  Tensor<float> images;         // [B, 3, H, W], H, W = the largest in the batch
  Tensor<uint8_t> mask;         // [B, H, W], 1 on padding, 0 on image pixels
  std::vector<Target> targets;  // [B]

  int64_t size() const { return int64_t(targets.size()); }
};

// Pad to the largest height and width of the batch.
inline Batch collate(const std::vector<TensorSample>& samples) {
  DETR_CHECK(!samples.empty(), "collate: empty list of samples");
  int64_t H = 0, W = 0;
  for (size_t b = 0; b < samples.size(); ++b) {
    const auto& im = samples[b].image;
    DETR_CHECK(im.defined() && im.rank() == 3 && im.dim(0) == 3 && im.dim(1) > 0 && im.dim(2) > 0,
               "collate: image " << b << " (image id " << samples[b].target.image_id
                                 << ") must be [3, H, W] with H, W > 0, got "
                                 << (im.defined() ? im.shape().str() : std::string("undefined")));
    H = std::max(H, im.dim(1));
    W = std::max(W, im.dim(2));
  }
  const int64_t B = int64_t(samples.size());
  Batch batch;
  batch.images = Tensor<float>::zeros({B, 3, H, W});  // [B, 3, H, W]
  batch.mask = Tensor<uint8_t>::ones({B, H, W});      // [B, H, W]
  for (int64_t b = 0; b < B; ++b) {
    const auto& im = samples[b].image;  // [3, h, w]
    const int64_t h = im.dim(1), w = im.dim(2);
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y) {
        const float* src = im.data() + (c * h + y) * w;
        for (int64_t x = 0; x < w; ++x)
          DETR_CHECK(std::isfinite(src[x]), "collate: image " << b << " (image id "
                                                             << samples[b].target.image_id
                                                             << ") has a non-finite pixel at (c "
                                                             << c << ", y " << y << ", x " << x
                                                             << ")");
        std::copy_n(src, w, batch.images.data() + ((b * 3 + c) * H + y) * W);
      }
    for (int64_t y = 0; y < h; ++y) std::fill_n(batch.mask.data() + (b * H + y) * W, w, 0);
    batch.targets.push_back(samples[b].target);
  }
  return batch;
}

// The mask at a feature level of size h x w: nearest neighbour exactly as
// F.interpolate(mask[None].float(), size=(h, w)).to(torch.bool)[0] (source index
// floor(dst * in / out) computed in float, as PyTorch's nearest_idx).
inline Tensor<uint8_t> downsample_mask(const Tensor<uint8_t>& mask, int64_t h, int64_t w) {
  DETR_CHECK(mask.defined() && mask.rank() == 3,
             "downsample_mask: mask must be [B, H, W], got "
                 << (mask.defined() ? mask.shape().str() : std::string("undefined")));
  DETR_CHECK(h > 0 && w > 0, "downsample_mask: target size " << h << " x " << w
                                                             << " must be positive");
  const int64_t B = mask.dim(0), H = mask.dim(1), W = mask.dim(2);
  auto nearest = [](int64_t out_index, int64_t in, int64_t out) -> int64_t {
    if (in == out) return out_index;
    if (out == 2 * in) return out_index >> 1;
    float scale = float(in) / float(out);
    return std::min(int64_t(std::floor(float(out_index) * scale)), in - 1);
  };
  auto out = Tensor<uint8_t>::empty({B, h, w});  // [B, h, w]
  std::vector<int64_t> sx(w);
  for (int64_t x = 0; x < w; ++x) sx[x] = nearest(x, W, w);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* src = mask.data() + (b * H + nearest(y, H, h)) * W;
      uint8_t* dst = out.data() + (b * h + y) * w;
      for (int64_t x = 0; x < w; ++x) dst[x] = src[sx[x]] ? 1 : 0;
    }
  return out;
}

}  // namespace detr
