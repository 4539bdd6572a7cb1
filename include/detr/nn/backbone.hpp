#pragma once
// Joiner<Net, PosEnc, NumLevels>: DETR's Backbone + Joiner (models/backbone.py): the ResNet's
// feature maps, each with its padding mask downsampled from the image mask and its positional
// encoding. State-dict names are the reference's: the Joiner is nn.Sequential(backbone,
// position_embedding), the backbone keeps the ResNet as `body`, so the ResNet's weights are
// "0.body.conv1.weight", ... and a learned encoding's "1.row_embed.weight" (DETR's model
// prefixes both with "backbone.").
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "detr/data/batch.hpp"
#include "detr/nn/module.hpp"
#include "detr/nn/resnet.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

// One feature level as the transformer consumes it (the reference's NestedTensor + pos).
template <class T>
struct FeatureLevel {
  Var<T> features;       // [B, C, h, w]
  Tensor<uint8_t> mask;  // [B, h, w], 1 on padding
  Var<T> pos;            // [B, 2 NumPosFeats, h, w]
};

/// \tparam Net a ResNet<...>
/// \tparam PosEnc PositionEmbeddingSine<...> or PositionEmbeddingLearned<...>
/// \tparam NumLevels how many of C3, C4, C5 to return, counted from C5: 1 is DETR's
///         (return_interm_layers=False: layer4 only), 3 is Deformable DETR's (layer2..layer4)
template <class Net, class PosEnc, int NumLevels = 1>
struct Joiner {
  static_assert(NumLevels >= 1 && NumLevels <= 3, "Joiner: NumLevels must be 1, 2 or 3");
  static_assert(std::is_same_v<typename Net::Scalar, typename PosEnc::Scalar>,
                "Joiner: the backbone and the positional encoding must share the scalar type");
  using Scalar = typename Net::Scalar;
  using T = Scalar;
  static constexpr int num_levels = NumLevels;
  // Channels and strides of the returned levels (a model sizes its input projections by them).
  static constexpr std::array<int, NumLevels> num_channels = [] {
    std::array<int, NumLevels> c{};
    for (int l = 0; l < NumLevels; ++l) c[size_t(l)] = Net::channels[size_t(3 - NumLevels + l)];
    return c;
  }();
  static constexpr std::array<int, NumLevels> strides = [] {
    std::array<int, NumLevels> s{};
    for (int l = 0; l < NumLevels; ++l) s[size_t(l)] = Net::strides[size_t(3 - NumLevels + l)];
    return s;
  }();

  // The reference's Backbone: the ResNet as `body`.
  struct Backbone {
    using Scalar = T;
    Net body;
    void init(Rng& rng) { body.init(rng); }
    template <class V>
    void visit(V& v) {
      v.child("body", body);
    }
  };

  Backbone backbone;
  PosEnc position_embedding;
  // Off (the reference's behaviour): the ResNet runs on the padded batch, so an image's features
  // near its right and bottom edges see the padding (non-zero after batch norm) and the level
  // masks are the image mask resized, so they may keep a row or column computed mostly from
  // padding. On: each image runs through the ResNet alone, on its own pixels, and its features
  // are zero-padded to the batch's largest and masked past its own extent, so an image gets the
  // same features, hence the same detections, whatever it is batched with. Needs each image in
  // the top-left corner of its mask (as collate() pads); train-mode batch norm then normalises
  // each image on its own.
  bool padding_invariant = false;

  void init(Rng& rng) {
    backbone.init(rng);
    position_embedding.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("0", backbone);
    v.child("1", position_embedding);
  }

  // images [B, 3, H, W], mask [B, H, W] (1 = padding) -> the last NumLevels of C3, C4, C5, each
  // with its mask (F.interpolate nearest, as Backbone.forward) and its encoding.
  std::array<FeatureLevel<T>, NumLevels> forward(const Var<T>& images, const Tensor<uint8_t>& mask) {
    DETR_CHECK(mask.defined() && mask.rank() == 3 && images.rank() == 4 &&
                   mask.dim(0) == images.dim(0) && mask.dim(1) == images.dim(2) &&
                   mask.dim(2) == images.dim(3),
               "Joiner: mask " << (mask.defined() ? mask.shape().str() : std::string("undefined"))
                               << " must be [B, H, W] of images " << images.shape());
    if (padding_invariant) return forward_per_image(images, mask);
    const auto features = backbone.body.forward(images).levels();
    std::array<FeatureLevel<T>, NumLevels> out;
    for (int l = 0; l < NumLevels; ++l) {
      auto& level = out[size_t(l)];
      level.features = features[size_t(3 - NumLevels + l)];
      level.mask = downsample_mask(mask, level.features.dim(2), level.features.dim(3));
      level.pos = position_embedding.forward(level.mask);
    }
    return out;
  }

 private:
  // The unpadded extent (h, w) of image b: its mask must be 0 exactly on [0, h) x [0, w).
  static std::array<int64_t, 2> image_extent(const Tensor<uint8_t>& mask, int64_t b) {
    const int64_t H = mask.dim(1), W = mask.dim(2);
    const uint8_t* m = mask.data() + b * H * W;
    int64_t h = 0, w = 0;
    while (h < H && !m[h * W]) ++h;
    while (w < W && !m[w]) ++w;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        DETR_CHECK(bool(m[y * W + x]) == (y >= h || x >= w),
                   "Joiner (padding_invariant): image " << b << "'s mask is not a top-left " << h << " x " << w
                                                        << " rectangle of zeros (pixel y " << y << ", x " << x << ")");
    DETR_CHECK(h > 0 && w > 0, "Joiner (padding_invariant): image " << b << " has no unmasked pixel");
    return {h, w};
  }

  // x [1, C, h, w] -> [1, C, H, W], zeros appended right and below.
  static Var<T> zero_pad(const Var<T>& x, int64_t H, int64_t W) {
    const int64_t C = x.dim(1), h = x.dim(2), w = x.dim(3);
    Var<T> y = w < W ? concat({x, Var<T>(Tensor<T>::zeros({1, C, h, W - w}))}, 3) : x;
    return h < H ? concat({y, Var<T>(Tensor<T>::zeros({1, C, H - h, W}))}, 2) : y;
  }

  std::array<FeatureLevel<T>, NumLevels> forward_per_image(const Var<T>& images, const Tensor<uint8_t>& mask) {
    const int64_t B = images.dim(0);
    std::vector<std::array<Var<T>, 3>> per_image;  // [B] x C3, C4, C5 of shape [1, C, h_b, w_b]
    for (int64_t b = 0; b < B; ++b) {
      const auto [h, w] = image_extent(mask, b);
      Var<T> image = slice(slice(slice(images, 0, b, b + 1), 2, 0, h), 3, 0, w);  // [1, 3, h, w]
      per_image.push_back(backbone.body.forward(image).levels());
    }
    std::array<FeatureLevel<T>, NumLevels> out;
    for (int l = 0; l < NumLevels; ++l) {
      const size_t c = size_t(3 - NumLevels + l);
      int64_t H = 0, W = 0;
      for (auto& f : per_image) H = std::max(H, f[c].dim(2)), W = std::max(W, f[c].dim(3));
      auto& level = out[size_t(l)];
      level.mask = Tensor<uint8_t>::ones({B, H, W});  // [B, H, W]
      std::vector<Var<T>> padded;
      for (int64_t b = 0; b < B; ++b) {
        const Var<T>& f = per_image[size_t(b)][c];  // [1, C, h, w]
        for (int64_t y = 0; y < f.dim(2); ++y) std::fill_n(level.mask.data() + (b * H + y) * W, f.dim(3), uint8_t(0));
        padded.push_back(zero_pad(f, H, W));
      }
      level.features = concat(padded, 0);  // [B, C, H, W]
      level.pos = position_embedding.forward(level.mask);
    }
    return out;
  }
};

// DETR's train_backbone rule on a Joiner's ResNet (see apply_train_backbone).
template <class Net, class PosEnc, int NumLevels>
void apply_train_backbone(Joiner<Net, PosEnc, NumLevels>& joiner, double lr_backbone) {
  apply_train_backbone(joiner.backbone.body, lr_backbone);
}

}  // namespace detr
