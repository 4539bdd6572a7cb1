#pragma once
// Target: the annotations of one image as the DETR reference passes them to the criterion
// (its `target` dict), and Sample: an image with its target.
//
// Boxes change meaning along the pipeline exactly as in the reference: after loading they are
// absolute xyxy pixels of the current image; Normalize turns them into cxcywh relative to the
// (unpadded) image size, which is what the matcher and losses expect.
#include <array>
#include <cstdint>

#include "detr/core/tensor.hpp"
#include "detr/data/image.hpp"

namespace detr {

struct Target {
  int64_t image_id = -1;
  Tensor<float> boxes;       // [N, 4] xyxy pixels; cxcywh in [0, 1] once normalised
  Tensor<int64_t> labels;    // [N] contiguous class labels in [0, num_classes)
  Tensor<float> area;        // [N] annotation area in pixels of the current image
  Tensor<uint8_t> iscrowd;   // [N] 0 for every kept object (crowds are dropped)
  std::array<int64_t, 2> orig_size{0, 0};  // (h, w) of the image as stored
  std::array<int64_t, 2> size{0, 0};       // (h, w) after the transforms
  bool normalized = false;                 // boxes are cxcywh / (w, h)

  int64_t num_objects() const { return labels.defined() ? labels.numel() : 0; }

  // Keep objects whose flag is set (crop drops boxes that left the image).
  Target select(const std::vector<bool>& keep) const {
    DETR_CHECK(int64_t(keep.size()) == num_objects(),
               "Target::select: " << keep.size() << " flags for " << num_objects() << " objects");
    int64_t n = 0;
    for (bool k : keep) n += k;
    Target t = *this;
    t.boxes = Tensor<float>::empty({n, 4});
    t.labels = Tensor<int64_t>::empty({n});
    t.area = Tensor<float>::empty({n});
    t.iscrowd = Tensor<uint8_t>::empty({n});
    for (int64_t i = 0, j = 0; i < num_objects(); ++i) {
      if (!keep[i]) continue;
      std::copy_n(boxes.data() + i * 4, 4, t.boxes.data() + j * 4);
      t.labels.data()[j] = labels.data()[i];
      t.area.data()[j] = area.data()[i];
      t.iscrowd.data()[j] = iscrowd.data()[i];
      ++j;
    }
    return t;
  }
};

struct Sample {
  Image image;
  Target target;
};

// A sample after the transforms' final Normalize: what a Batch is made of.
struct TensorSample {
  Tensor<float> image;  // [3, H, W] normalised
  Target target;        // boxes cxcywh in [0, 1]
};

}  // namespace detr
