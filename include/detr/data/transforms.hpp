#pragma once
// The DETR data transforms (datasets/transforms.py of the reference), on a Sample (RGB image +
// target with xyxy pixel boxes), and the train / eval pipelines of make_coco_transforms.
//
// Each random transform draws from the Rng it is given, never from a global source, so a
// pipeline run with the same seed gives the same sample (the loader seeds one Rng per sample
// from (seed, epoch, index), which keeps batches independent of the number of threads).
// Box updates follow the reference exactly: flip mirrors x, resize scales by the realised
// width / height ratios (area by their product), crop shifts, clamps, recomputes the area and
// drops boxes left with no extent; Normalize makes them cxcywh relative to the image size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "detr/core/error.hpp"
#include "detr/core/rng.hpp"
#include "detr/data/image.hpp"
#include "detr/data/target.hpp"

namespace detr {

// The reference's get_size_with_aspect_ratio: (h, w) with the shorter side `size`, unless the
// longer side would then exceed max_size, in which case the shorter side shrinks to
// round(max_size * min / max) (Python's round: half to even). Returns (height, width).
inline std::pair<int64_t, int64_t> get_size_with_aspect_ratio(int64_t w, int64_t h, int64_t size,
                                                              std::optional<int64_t> max_size) {
  if (max_size) {
    double min_orig = double(std::min(w, h)), max_orig = double(std::max(w, h));
    if (max_orig / min_orig * double(size) > double(*max_size))
      size = int64_t(std::nearbyint(double(*max_size) * min_orig / max_orig));
  }
  if ((w <= h && w == size) || (h <= w && h == size)) return {h, w};
  if (w < h) return {int64_t(double(size * h) / double(w)), size};
  return {size, int64_t(double(size * w) / double(h))};
}

namespace internal {
inline void check_sample(const Sample& s, const char* op) {
  const Target& t = s.target;
  DETR_CHECK(s.image.pixels.defined() && s.image.pixels.rank() == 3 && s.image.pixels.dim(2) == 3,
             op << ": image id " << t.image_id << ": pixels must be [H, W, 3]");
  DETR_CHECK(!t.normalized, op << ": image id " << t.image_id
                               << ": boxes are already normalised (Normalize must come last)");
  const int64_t n = t.num_objects();
  DETR_CHECK(t.boxes.shape() == Shape({n, 4}) && t.area.shape() == Shape{n} &&
                 t.iscrowd.shape() == Shape{n},
             op << ": image id " << t.image_id << ": target fields disagree: boxes "
                << t.boxes.shape() << ", labels [" << n << "], area " << t.area.shape()
                << ", iscrowd " << t.iscrowd.shape() << " (expected [N, 4], [N], [N], [N])");
}
}  // namespace internal

// Mirror left-right.
inline Sample hflip(const Sample& s) {
  internal::check_sample(s, "hflip");
  Sample out{hflip(s.image), s.target};
  out.target.boxes = s.target.boxes.clone();
  const float w = float(s.image.width());
  for (int64_t i = 0; i < out.target.num_objects(); ++i) {
    float* b = out.target.boxes.data() + i * 4;  // boxes[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [w, 0, w, 0]
    float x0 = b[0], x1 = b[2];
    b[0] = w - x1;
    b[2] = w - x0;
  }
  return out;
}

// Resize so the shorter side is `size` (longer side capped by max_size).
inline Sample resize(const Sample& s, int64_t size, std::optional<int64_t> max_size) {
  internal::check_sample(s, "resize");
  DETR_CHECK(size > 0, "resize: size must be positive, got " << size);
  const int64_t W = s.image.width(), H = s.image.height();
  auto [oh, ow] = get_size_with_aspect_ratio(W, H, size, max_size);
  Sample out{resize(s.image, oh, ow), s.target};
  const float rw = float(double(ow) / double(W)), rh = float(double(oh) / double(H));
  out.target.boxes = s.target.boxes.clone();
  out.target.area = s.target.area.clone();
  for (int64_t i = 0; i < out.target.num_objects(); ++i) {
    float* b = out.target.boxes.data() + i * 4;
    b[0] *= rw, b[1] *= rh, b[2] *= rw, b[3] *= rh;
    out.target.area.data()[i] *= rw * rh;
  }
  out.target.size = {oh, ow};
  return out;
}

// Crop the region [top, top + height) x [left, left + width).
inline Sample crop(const Sample& s, int64_t top, int64_t left, int64_t height, int64_t width) {
  internal::check_sample(s, "crop");
  DETR_CHECK(height > 0 && width > 0,
             "crop: image id " << s.target.image_id << ": region " << height << " x " << width
                               << " must be positive");
  Sample out{crop(s.image, top, left, height, width), s.target};
  const int64_t n = s.target.num_objects();
  out.target.boxes = Tensor<float>::empty({n, 4});
  out.target.area = Tensor<float>::empty({n});
  std::vector<bool> keep(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float* b = s.target.boxes.data() + i * 4;
    float* o = out.target.boxes.data() + i * 4;
    const float lim[2] = {float(width), float(height)}, off[2] = {float(left), float(top)};
    for (int k = 0; k < 4; ++k) o[k] = std::max(std::min(b[k] - off[k % 2], lim[k % 2]), 0.f);
    out.target.area.data()[i] = (o[2] - o[0]) * (o[3] - o[1]);
    keep[i] = o[2] > o[0] && o[3] > o[1];
  }
  out.target.size = {height, width};
  out.target = out.target.select(keep);
  return out;
}

// ToTensor + Normalize: [3, H, W] float image, boxes cxcywh / (w, h).
inline TensorSample normalize(const Sample& s, std::array<float, 3> mean = kImageNetMean,
                              std::array<float, 3> stddev = kImageNetStd) {
  internal::check_sample(s, "normalize");
  TensorSample out{to_normalized_tensor(s.image, mean, stddev), s.target};
  const float w = float(s.image.width()), h = float(s.image.height());
  out.target.boxes = s.target.boxes.clone();
  for (int64_t i = 0; i < out.target.num_objects(); ++i) {
    float* b = out.target.boxes.data() + i * 4;
    float x0 = b[0], y0 = b[1], x1 = b[2], y1 = b[3];
    b[0] = (x0 + x1) / 2 / w, b[1] = (y0 + y1) / 2 / h, b[2] = (x1 - x0) / w, b[3] = (y1 - y0) / h;
  }
  out.target.normalized = true;
  out.target.size = {s.image.height(), s.image.width()};
  return out;
}

// A random transform: Sample in, Sample out, randomness from the Rng.
using Transform = std::function<Sample(const Sample&, Rng&)>;

inline Transform random_horizontal_flip(double p = 0.5) {
  return [p](const Sample& s, Rng& rng) { return rng.uniform() < p ? hflip(s) : s; };
}

// Shorter side drawn uniformly from `sizes`.
inline Transform random_resize(std::vector<int64_t> sizes, std::optional<int64_t> max_size = {}) {
  DETR_CHECK(!sizes.empty(), "random_resize: the list of sizes is empty");
  for (auto v : sizes) DETR_CHECK(v > 0, "random_resize: size " << v << " must be positive");
  return [sizes = std::move(sizes), max_size](const Sample& s, Rng& rng) {
    return resize(s, sizes[size_t(rng.randint(0, int64_t(sizes.size()) - 1))], max_size);
  };
}

// A random crop of width in [min_size, min(W, max_size)] and height in [min_size,
// min(H, max_size)], at a uniform position. An image smaller than min_size is kept whole along
// that side (the reference would raise in random.randint).
inline Transform random_size_crop(int64_t min_size, int64_t max_size) {
  DETR_CHECK(0 < min_size && min_size <= max_size,
             "random_size_crop: need 0 < min_size <= max_size, got " << min_size << ", "
                                                                     << max_size);
  return [=](const Sample& s, Rng& rng) {
    const int64_t W = s.image.width(), H = s.image.height();
    const int64_t w = rng.randint(std::min(min_size, W), std::min(W, max_size));
    const int64_t h = rng.randint(std::min(min_size, H), std::min(H, max_size));
    const int64_t top = rng.randint(0, H - h), left = rng.randint(0, W - w);
    return crop(s, top, left, h, w);
  };
}

// `a` with probability p, else `b`.
inline Transform random_select(Transform a, Transform b, double p = 0.5) {
  return [a = std::move(a), b = std::move(b), p](const Sample& s, Rng& rng) {
    return rng.uniform() < p ? a(s, rng) : b(s, rng);
  };
}

inline Transform compose(std::vector<Transform> ts) {
  return [ts = std::move(ts)](const Sample& s, Rng& rng) {
    Sample cur = s;
    for (const auto& t : ts) cur = t(cur, rng);
    return cur;
  };
}

// Sizes of make_coco_transforms. The defaults are the reference's COCO values; smaller data
// (FashionDet) scales them down.
struct DetrTransformConfig {
  std::vector<int64_t> scales = {480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800};
  int64_t max_size = 1333;
  std::vector<int64_t> crop_resize = {400, 500, 600};  // before the random crop
  int64_t crop_min = 384, crop_max = 600;
  int64_t eval_size = 800;
};

// The full pipeline: augmentation (train) or fixed resize (eval), then Normalize.
class DetrTransforms {
 public:
  DetrTransforms(bool train, const DetrTransformConfig& cfg = {}) {
    if (train) {
      augment_ = compose(
          {random_horizontal_flip(),
           random_select(random_resize(cfg.scales, cfg.max_size),
                         compose({random_resize(cfg.crop_resize),
                                  random_size_crop(cfg.crop_min, cfg.crop_max),
                                  random_resize(cfg.scales, cfg.max_size)}))});
    } else {
      augment_ = random_resize({cfg.eval_size}, cfg.max_size);
    }
  }
  TensorSample operator()(const Sample& s, Rng& rng) const { return normalize(augment_(s, rng)); }

 private:
  Transform augment_;
};

}  // namespace detr
