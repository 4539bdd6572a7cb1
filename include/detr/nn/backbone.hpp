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
};

// DETR's train_backbone rule on a Joiner's ResNet (see apply_train_backbone).
template <class Net, class PosEnc, int NumLevels>
void apply_train_backbone(Joiner<Net, PosEnc, NumLevels>& joiner, double lr_backbone) {
  apply_train_backbone(joiner.backbone.body, lr_backbone);
}

}  // namespace detr
