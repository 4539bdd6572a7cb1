#pragma once
// Deformable DETR (fundamentalvision/Deformable-DETR models/deformable_detr.py, DeformableDETR
// with aux_loss=True), plain, with iterative box refinement, or two-stage, as one type:
//
//   using Backbone = Joiner<ResNet<50, 1, float, BackboneNorm::Frozen>,
//                           PositionEmbeddingSine<128, float, SineNorm::Deformable>, 3>;
//   DeformableDetr<Backbone, 91, DeformableDetrConfig{.with_box_refine = true}> model;
//   DetectorOutput<float> out = model.forward(images, mask);
//
// Official state_dict names: backbone.0.body.*, input_proj.N.{0 (Conv2d), 1 (GroupNorm)}.*,
// transformer.*, class_embed.N.*, bbox_embed.N.layers.M.*, query_embed.weight (single stage).
// Without refinement the reference's heads are one module listed under every index
// (class_embed.0 = class_embed.1 = ...): here there is one copy, class_embed.0 / bbox_embed.0.
// The reference's aliases transformer.decoder.{class,bbox}_embed.* are not separate tensors
// either; tools/convert_checkpoint.py drops every alias from an official checkpoint.
#include <array>
#include <cmath>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detr/data/batch.hpp"
#include "detr/models/detector.hpp"
#include "detr/nn/backbone.hpp"
#include "detr/nn/conv2d.hpp"
#include "detr/nn/embedding.hpp"
#include "detr/nn/group_norm.hpp"
#include "detr/nn/linear.hpp"
#include "detr/nn/mlp.hpp"
#include "detr/transformer/deformable_transformer.hpp"

namespace detr {

/// The reference's model arguments (main.py's defaults).
struct DeformableDetrConfig {
  int hidden_dim = 256;
  int nheads = 8;
  int dim_feedforward = 1024;
  int enc_layers = 6;
  int dec_layers = 6;
  int num_queries = 300;
  int num_feature_levels = 4;
  int dec_n_points = 4;
  int enc_n_points = 4;
  bool with_box_refine = false;
  bool two_stage = false;

  constexpr DeformableTransformerConfig transformer() const {
    return {hidden_dim, nheads,       enc_layers,   dec_layers, dim_feedforward, num_feature_levels,
            dec_n_points, enc_n_points, two_stage, num_queries};
  }
};

namespace internal {
// One input projection, nn.Sequential(Conv2d, GroupNorm(32, D)): names "0.*" and "1.*".
template <int Cin, int D, int K, int Stride, int Padding, class T>
struct InputProj {
  using Scalar = T;
  Conv2d<Cin, D, K, Stride, Padding, 1, T> conv;
  GroupNorm<32, D, T> norm;
  // The reference re-initialises the conv: xavier_uniform_ (gain 1), zero bias.
  void init(Rng& rng) {
    const double bound = std::sqrt(6.0 / double((Cin + D) * K * K));
    conv.weight.mutable_value().copy_(rng.uniform_tensor<T>({D, Cin, K, K}, -bound, bound));
    conv.bias.mutable_value().fill_(T(0));
    norm.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("0", conv);
    v.child("1", norm);
  }
  // x [B, Cin, h, w] -> [B, D, h', w']
  Var<T> forward(const Var<T>& x) const { return norm.forward(conv.forward(x)); }
};

template <class T>
struct NoQueryEmbed {
  using Scalar = T;
  void init(Rng&) {}
  template <class V>
  void visit(V&) {}
};
}  // namespace internal

/// \tparam Backbone a Joiner<ResNet, PositionEmbeddingSine<hidden_dim / 2, T, SineNorm::Deformable>, NB>
/// \tparam NumClasses sigmoid classes (no background class; 91 for COCO as the reference)
/// \tparam Cfg sizes and variant (DeformableDetrConfig)
template <class Backbone, int NumClasses, DeformableDetrConfig Cfg = DeformableDetrConfig{}>
struct DeformableDetr {
  using Scalar = typename Backbone::Scalar;
  using T = Scalar;
  static constexpr int D = Cfg.hidden_dim, L = Cfg.num_feature_levels, NB = Backbone::num_levels;
  static constexpr int num_classes = NumClasses, num_queries = Cfg.num_queries;
  static constexpr bool with_box_refine = Cfg.with_box_refine, two_stage = Cfg.two_stage;
  // Refinement: one head per decoder layer, plus the proposal heads for two-stage.
  static constexpr int num_pred = with_box_refine ? Cfg.dec_layers + (two_stage ? 1 : 0) : 1;
  static_assert(!two_stage || with_box_refine,
                "DeformableDetr: two_stage needs with_box_refine (the reference's two-stage path indexes the "
                "per-layer heads and fails without them)");
  static_assert(NumClasses >= 1, "DeformableDetr: NumClasses must be positive");
  static_assert(L >= NB, "DeformableDetr: num_feature_levels must cover the backbone's levels");
  static_assert(decltype(Backbone::position_embedding)::channels == D,
                "DeformableDetr: the position embedding must have hidden_dim channels");
  static_assert(D % 32 == 0, "DeformableDetr: hidden_dim must be a multiple of 32 (GroupNorm(32, hidden_dim))");

  using Transformer = DeformableTransformer<Cfg.transformer(), T>;

 private:
  // Level l's projection: 1x1 on backbone level l, then 3x3 stride-2 convs, the first on the
  // last backbone map, the rest on the previous projected map.
  static constexpr int proj_in(int l) {
    return l < NB ? Backbone::num_channels[size_t(l)] : l == NB ? Backbone::num_channels[size_t(NB - 1)] : D;
  }
  template <int l>
  using ProjAt = internal::InputProj<proj_in(l), D, (l < NB ? 1 : 3), (l < NB ? 1 : 2), (l < NB ? 0 : 1), T>;
  template <size_t... I>
  static std::tuple<ProjAt<int(I)>...> proj_tuple(std::index_sequence<I...>);

 public:
  Backbone backbone;
  decltype(proj_tuple(std::make_index_sequence<L>{})) input_proj;
  Transformer transformer;
  Repeat<num_pred, Linear<D, NumClasses, T>> class_embed;
  Repeat<num_pred, MLP<D, D, 4, 3, T>> bbox_embed;
  std::conditional_t<two_stage, internal::NoQueryEmbed<T>, Embedding<num_queries, 2 * D, T>> query_embed;

  static CriterionConfig criterion_config() {
    CriterionConfig c;
    c.num_classes = NumClasses;
    c.class_loss = ClassLoss::focal;
    c.focal_alpha = 0.25;
    c.focal_gamma = 2.0;
    c.weight_ce = 2.0;
    c.weight_bbox = 5.0;
    c.weight_giou = 2.0;
    return c;
  }
  static MatcherConfig matcher_config() {
    MatcherConfig m;
    m.cost_class = 2.0;
    m.cost_bbox = 5.0;
    m.cost_giou = 2.0;
    m.class_cost = ClassCost::focal;
    m.focal_alpha = 0.25;
    m.focal_gamma = 2.0;
    return m;
  }

  void set_dropout(double p) { transformer.set_dropout(p); }

  // The reference's init: class bias at prior 0.01, the box MLP's last layer zero with the
  // size logits at -2 (on the first head only when refining, 0 everywhere for two-stage), the
  // per-layer heads deep copies of one initialised head.
  void init(Rng& rng) {
    backbone.init(rng);
    std::apply([&](auto&... p) { (p.init(rng), ...); }, input_proj);
    transformer.init(rng);
    class_embed[0].init(rng);
    bbox_embed[0].init(rng);
    const T bias_value = T(-std::log((1 - 0.01) / 0.01));
    class_embed[0].bias.mutable_value().fill_(bias_value);
    auto& last = bbox_embed[0].last;
    last.weight.mutable_value().fill_(T(0));
    last.bias.mutable_value().fill_(T(0));
    for (int i = 1; i < num_pred; ++i) {
      copy_params(class_embed[0], class_embed[i]);
      copy_params(bbox_embed[0], bbox_embed[i]);
    }
    if constexpr (!two_stage)
      for (int c = 2; c < 4; ++c) last.bias.mutable_value().data()[c] = T(-2);
    query_embed.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("backbone", backbone);
    visit_input_proj(v, std::make_index_sequence<L>{});
    v.child("transformer", transformer);
    v.child("class_embed", class_embed);
    v.child("bbox_embed", bbox_embed);
    v.child("query_embed", query_embed);
  }

  // images [B, 3, H, W], mask [B, H, W] (1 = padding) -> every decoder layer's logits
  // [B, Q, NumClasses] and boxes [B, Q, 4] (sigmoid cxcywh), and for two-stage the encoder's
  // proposals (logits [B, S, NumClasses], boxes sigmoid(enc_outputs_coord_unact) [B, S, 4]).
  DetectorOutput<T> forward(const Var<T>& images, const Tensor<uint8_t>& mask) {
    DETR_CHECK(images.defined() && images.rank() == 4 && images.dim(1) == 3,
               "DeformableDetr: images must be [B, 3, H, W], got "
                   << (images.defined() ? images.shape().str() : std::string("undefined")));
    DETR_CHECK(mask.defined() && mask.shape() == Shape({images.dim(0), images.dim(2), images.dim(3)}),
               "DeformableDetr: mask must be [B, H, W] = [" << images.dim(0) << ", " << images.dim(2) << ", "
                                                           << images.dim(3) << "] like images, got "
                                                           << (mask.defined() ? mask.shape().str()
                                                                              : std::string("undefined")));
    auto features = backbone.forward(images, mask);
    std::vector<Var<T>> srcs, pos;
    std::vector<Tensor<uint8_t>> masks;
    project(features, mask, srcs, masks, pos, std::make_index_sequence<L>{});

    DeformableHeads<T> heads;
    if constexpr (with_box_refine) {
      heads.class_embed = [this](int i, const Var<T>& x) { return class_embed[i].forward(x); };
      heads.bbox_embed = [this](int i, const Var<T>& x) { return bbox_embed[i].forward(x); };
    }
    Var<T> query;
    if constexpr (!two_stage) query = query_embed.weight;
    auto t = transformer.forward(srcs, masks, pos, query, heads);

    DetectorOutput<T> out;
    const int num_layers = int(t.hs.size());
    for (int lvl = 0; lvl < num_layers; ++lvl) {
      Predictions<T> p;
      p.logits = class_embed[with_box_refine ? lvl : 0].forward(t.hs[size_t(lvl)]);
      if constexpr (with_box_refine) {
        // The decoder computed sigmoid(bbox_embed[lvl](hs[lvl]) + inverse_sigmoid(reference))
        // with the reference of this layer, which is the reference's outputs_coord.
        p.boxes = t.refined_boxes[size_t(lvl)];
      } else {
        const Var<T>& reference = lvl == 0 ? t.init_reference : t.inter_references[size_t(lvl - 1)];
        Var<T> tmp = bbox_embed[0].forward(t.hs[size_t(lvl)]);
        Var<T> ref = inverse_sigmoid(reference);
        p.boxes = sigmoid(reference.dim(2) == 4 ? tmp + ref
                                                : concat({slice(tmp, 2, 0, 2) + ref, slice(tmp, 2, 2, 4)}, 2));
      }
      out.layers.push_back(std::move(p));
    }
    if constexpr (two_stage) out.encoder = Predictions<T>{t.enc_outputs_class, sigmoid(t.enc_outputs_coord_unact)};
    return out;
  }

 private:
  template <class M>
  static void copy_params(M& from, M& to) {
    auto src = named_parameters(from), dst = named_parameters(to);
    for (size_t i = 0; i < src.size(); ++i) dst[i].var->mutable_value().copy_(src[i].var->value());
  }

  template <class V, size_t... I>
  void visit_input_proj(V& v, std::index_sequence<I...>) {
    (v.child("input_proj." + std::to_string(I), std::get<I>(input_proj)), ...);
  }

  template <class Features, size_t... I>
  void project(const Features& features, const Tensor<uint8_t>& mask, std::vector<Var<T>>& srcs,
               std::vector<Tensor<uint8_t>>& masks, std::vector<Var<T>>& pos, std::index_sequence<I...>) {
    (project_level<int(I)>(features, mask, srcs, masks, pos), ...);
  }

  // Backbone levels: projected features with the backbone's mask and encoding. Extra levels:
  // the mask by nearest interpolation of the image mask, the encoding from the Joiner's
  // position embedding.
  template <int l, class Features>
  void project_level(const Features& features, const Tensor<uint8_t>& mask, std::vector<Var<T>>& srcs,
                     std::vector<Tensor<uint8_t>>& masks, std::vector<Var<T>>& pos) {
    auto& proj = std::get<size_t(l)>(input_proj);
    if constexpr (l < NB) {
      const auto& f = features[size_t(l)];
      srcs.push_back(proj.forward(f.features));
      masks.push_back(f.mask);
      pos.push_back(f.pos);
    } else {
      Var<T> src = proj.forward(l == NB ? features[size_t(NB - 1)].features : srcs.back());
      auto m = downsample_mask(mask, src.dim(2), src.dim(3));
      pos.push_back(backbone.position_embedding.forward(m));
      srcs.push_back(src);
      masks.push_back(std::move(m));
    }
  }
};

}  // namespace detr
