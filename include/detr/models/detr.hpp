#pragma once
// Detr: the DETR detector (facebookresearch/detr models/detr.py) as a type. A backbone gives
// the last feature map (C5) with its mask and sine/learned position encoding; a 1x1 conv
// projects it to the transformer width; the post-norm transformer decodes NumQueries learned
// queries; one class head (NumClasses + 1, the last is "no object") and one 3-layer box MLP,
// shared by every decoder layer, turn each layer's output into predictions (aux losses use all
// but the last).
//
// State-dict names are the reference's: backbone.0.body.*, backbone.1.* (learned encodings),
// input_proj.*, transformer.*, query_embed.weight, class_embed.*, bbox_embed.layers.N.*, so a
// checkpoint converted with tools/convert_checkpoint.py loads with load_state_dict.
//
//   using Backbone = Joiner<ResNet<50, 1, float, BackboneNorm::Frozen>, PositionEmbeddingSine<128>>;
//   Detr<Backbone, 91> model;     // DETR R50: d 256, 8 heads, FFN 2048, 6 + 6 layers, 100 queries
//   model.init(rng);
//   DetectorOutput<float> out = model.forward(images, mask);
#include "detr/models/detector.hpp"
#include "detr/nn/backbone.hpp"
#include "detr/nn/conv2d.hpp"
#include "detr/nn/embedding.hpp"
#include "detr/nn/linear.hpp"
#include "detr/nn/mlp.hpp"
#include "detr/nn/position_encoding.hpp"
#include "detr/transformer/detr_transformer.hpp"

namespace detr {

/// \tparam Backbone a Joiner<Net, PosEnc, 1> whose encoding has D channels
/// \tparam NumClasses object classes (the class head has NumClasses + 1 outputs)
/// \tparam D transformer width   \tparam H attention heads   \tparam F FFN hidden width
/// \tparam EncLayers, DecLayers stack depths   \tparam NumQueries learned object queries
template <class Backbone, int NumClasses, int D = 256, int H = 8, int F = 2048, int EncLayers = 6, int DecLayers = 6,
          int NumQueries = 100>
struct Detr {
  using Scalar = typename Backbone::Scalar;
  using T = Scalar;
  static_assert(Backbone::num_levels == 1, "Detr: the backbone must return one level (Joiner<Net, PosEnc, 1>)");
  static_assert(2 * decltype(Backbone::position_embedding)::num_pos_feats == D,
                "Detr<Backbone, NumClasses, D>: the position encoding must have D channels (2 * NumPosFeats == D)");
  static_assert(NumClasses > 0 && NumQueries > 0 && DecLayers > 0, "Detr: classes, queries and decoder layers must be positive");
  static constexpr int num_classes = NumClasses, num_queries = NumQueries, d_model = D,
                       num_decoder_layers = DecLayers;
  static constexpr int backbone_channels = Backbone::num_channels[0];

  Backbone backbone;
  Conv2d<backbone_channels, D, 1, 1, 0, 1, T> input_proj;
  DetrTransformer<D, H, F, EncLayers, DecLayers, T> transformer;
  Embedding<NumQueries, D, T> query_embed;
  Linear<D, NumClasses + 1, T> class_embed;
  MLP<D, D, 4, 3, T> bbox_embed;

  // DETR trains with softmax cross-entropy (no-object weight 0.1) and matches with the same
  // class cost; boxes: L1 5, GIoU 2 (main.py's defaults).
  static CriterionConfig criterion_config() {
    CriterionConfig c;
    c.num_classes = NumClasses;
    c.class_loss = ClassLoss::cross_entropy;
    c.eos_coef = 0.1;
    c.weight_ce = 1;
    c.weight_bbox = 5;
    c.weight_giou = 2;
    return c;
  }
  static MatcherConfig matcher_config() {
    MatcherConfig m;
    m.class_cost = ClassCost::softmax;
    m.cost_class = 1;
    m.cost_bbox = 5;
    m.cost_giou = 2;
    return m;
  }

  void set_dropout(double p) { transformer.set_dropout(p); }

  // The reference builds the backbone and transformer first (the transformer xavier-initialises
  // its own matrices), then the heads with torch's default inits.
  void init(Rng& rng) {
    backbone.init(rng);
    transformer.init(rng);
    class_embed.init(rng);
    bbox_embed.init(rng);
    query_embed.init(rng);
    input_proj.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("transformer", transformer);
    v.child("class_embed", class_embed);
    v.child("bbox_embed", bbox_embed);
    v.child("query_embed", query_embed);
    v.child("input_proj", input_proj);
    v.child("backbone", backbone);
  }

  // images [B, 3, H, W] normalised, mask [B, H, W] (1 = padding) -> every decoder layer's
  // logits [B, Q, NumClasses + 1] and boxes [B, Q, 4] (sigmoid cxcywh).
  DetectorOutput<T> forward(const Var<T>& images, const Tensor<uint8_t>& mask) {
    DETR_CHECK(images.rank() == 4 && images.dim(1) == 3,
               "Detr: images must be [B, 3, H, W], got " << images.shape());
    auto level = std::move(backbone.forward(images, mask)[0]);
    Var<T> src = input_proj.forward(level.features);  // [B, D, h, w]
    const int64_t B = src.dim(0), HW = src.dim(2) * src.dim(3);
    // [B, D, h, w] -> [B, hw, D]: the batch-first form of the reference's flatten(2).permute(2, 0, 1)
    auto tokens = [&](const Var<T>& x) { return permute(reshape(x, {B, int64_t(D), HW}), {0, 2, 1}); };
    auto out = transformer.forward(tokens(src), level.mask.reshape({B, HW}), query_embed.weight, tokens(level.pos));
    DetectorOutput<T> result;
    result.layers.reserve(out.layers.size());
    for (const Var<T>& hs : out.layers)  // [B, Q, D]
      result.layers.push_back({class_embed.forward(hs), sigmoid(bbox_embed.forward(hs))});
    return result;
  }
};

}  // namespace detr
