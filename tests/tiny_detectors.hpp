#pragma once
// Small DETR and Deformable DETR detectors for FashionDet's 10 classes, with trainable batch
// norm and dropout: fast enough to train a few steps in a test (resume, determinism).
#include "detr/models/deformable_detr.hpp"
#include "detr/models/detr.hpp"

namespace detr::test {

using TinyDetrBackbone = Joiner<ResNet<18, 16, float, BackboneNorm::Trainable>, PositionEmbeddingSine<16>, 1>;
//                                 classes D  H  FFN enc dec queries
using TinyDetr = Detr<TinyDetrBackbone, 10, 32, 4, 64, 2, 2, 8>;

using TinyDeformableBackbone =
    Joiner<ResNet<18, 32, float, BackboneNorm::Trainable>, PositionEmbeddingSine<16, float, SineNorm::Deformable>, 3>;
inline constexpr DeformableDetrConfig kTinyDeformable{.hidden_dim = 32, .nheads = 4, .dim_feedforward = 64,
                                                      .enc_layers = 2, .dec_layers = 2, .num_queries = 8,
                                                      .num_feature_levels = 4, .dec_n_points = 2, .enc_n_points = 2};
inline constexpr DeformableDetrConfig tiny_deformable(bool refine, bool two_stage) {
  auto c = kTinyDeformable;
  c.with_box_refine = refine;
  c.two_stage = two_stage;
  return c;
}
using TinyDeformable = DeformableDetr<TinyDeformableBackbone, 10, kTinyDeformable>;
using TinyDeformableRefine = DeformableDetr<TinyDeformableBackbone, 10, tiny_deformable(true, false)>;
using TinyDeformableTwoStage = DeformableDetr<TinyDeformableBackbone, 10, tiny_deformable(true, true)>;

}  // namespace detr::test
