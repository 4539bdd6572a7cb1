#pragma once
// Deformable DETR's transformer (fundamentalvision/Deformable-DETR
// models/deformable_transformer.py, DeformableTransformer with return_intermediate_dec=True),
// single-stage or two-stage, with the official state_dict names:
//
//   level_embed, encoder.layers.N.*, decoder.layers.N.*, and either reference_points.* (single
//   stage) or enc_output.*, enc_output_norm.*, pos_trans.*, pos_trans_norm.* (two-stage).
//
// The prediction heads belong to the detector (class_embed.N, bbox_embed.N); the reference
// hands them to its decoder for box refinement and the two-stage proposals, and so does this
// transformer: forward takes them as DeformableHeads.
//
// Inputs per level as the reference takes them: srcs / pos [B, D, h, w], masks [B, h, w];
// they are flattened level after level into [B, S, D] (S = sum h w).
#include <cmath>
#include <algorithm>
#include <functional>
#include <limits>
#include <numbers>
#include <type_traits>
#include <vector>

#include "detr/nn/layer_norm.hpp"
#include "detr/nn/linear.hpp"
#include "detr/ops/indexing.hpp"
#include "detr/transformer/deformable_layers.hpp"
#include "detr/transformer/detr_transformer.hpp"

namespace detr {

/// The reference's constructor arguments (two_stage_num_proposals is the detector's
/// num_queries).
struct DeformableTransformerConfig {
  int d_model = 256;
  int nhead = 8;
  int num_encoder_layers = 6;
  int num_decoder_layers = 6;
  int dim_feedforward = 1024;
  int num_feature_levels = 4;
  int dec_n_points = 4;
  int enc_n_points = 4;
  bool two_stage = false;
  int two_stage_num_proposals = 300;
};

// The detector's heads as the transformer calls them: (index, x [B, N, D]) -> [B, N, C].
// bbox_embed for refinement (indices 0 .. num_decoder_layers - 1) and both at index
// num_decoder_layers for the two-stage proposals (the reference's "hack implementation").
template <class T>
struct DeformableHeads {
  std::function<Var<T>(int, const Var<T>&)> class_embed;
  std::function<Var<T>(int, const Var<T>&)> bbox_embed;
};

template <class T>
struct DeformableTransformerOutput {
  std::vector<Var<T>> hs;                // one [B, Q, D] per decoder layer
  Var<T> init_reference;                 // [B, Q, 2] (single stage) or [B, Q, 4] (two-stage)
  std::vector<Var<T>> inter_references;  // the decoder's reference after each layer
  std::vector<Var<T>> refined_boxes;     // with a refining bbox_embed: each layer's boxes [B, Q, 4]
  Var<T> memory;                         // [B, S, D]: the encoder output
  Tensor<uint8_t> mask_flatten;          // [B, S]
  Tensor<int64_t> spatial_shapes;        // [L, 2] (h, w)
  Tensor<T> valid_ratios;                // [B, L, 2] (w, h)
  Var<T> enc_outputs_class;              // two-stage: [B, S, C]
  Var<T> enc_outputs_coord_unact;        // two-stage: [B, S, 4], +inf where no proposal is valid
};

namespace internal {
template <int D, class T>
struct DeformableSingleStage {
  using Scalar = T;
  Linear<D, 2, T> reference_points;
  void init(Rng& rng) { reference_points.init(rng); }
  template <class V>
  void visit(V& v) {
    v.child("reference_points", reference_points);
  }
};

template <int D, class T>
struct DeformableTwoStage {
  using Scalar = T;
  Linear<D, D, T> enc_output;
  LayerNorm<D, T> enc_output_norm;
  Linear<2 * D, 2 * D, T> pos_trans;
  LayerNorm<2 * D, T> pos_trans_norm;
  void init(Rng& rng) {
    enc_output.init(rng);
    enc_output_norm.init(rng);
    pos_trans.init(rng);
    pos_trans_norm.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("enc_output", enc_output);
    v.child("enc_output_norm", enc_output_norm);
    v.child("pos_trans", pos_trans);
    v.child("pos_trans_norm", pos_trans_norm);
  }
};
}  // namespace internal

template <DeformableTransformerConfig C, class T = float>
struct DeformableTransformer {
  static constexpr int D = C.d_model, L = C.num_feature_levels, num_queries = C.two_stage_num_proposals;
  static_assert(D % C.nhead == 0, "DeformableTransformer: d_model must be divisible by nhead");
  static_assert(D % 4 == 0, "DeformableTransformer: d_model must be a multiple of 4 (sine pairs of the proposals)");
  static_assert(L >= 1 && C.num_encoder_layers >= 1 && C.num_decoder_layers >= 1,
                "DeformableTransformer: needs a feature level and at least one encoder and decoder layer");
  using Scalar = T;
  using Encoder = DeformableTransformerEncoder<D, C.nhead, C.dim_feedforward, L, C.enc_n_points,
                                               C.num_encoder_layers, T>;
  using Decoder = DeformableTransformerDecoder<D, C.nhead, C.dim_feedforward, L, C.dec_n_points,
                                               C.num_decoder_layers, T>;
  static constexpr bool two_stage = C.two_stage;

  Encoder encoder;
  Decoder decoder;
  Var<T> level_embed = parameter<T>({L, D});  // [L, D]
  std::conditional_t<two_stage, internal::DeformableTwoStage<D, T>, internal::DeformableSingleStage<D, T>> stage;

  void set_dropout(double p) {
    for (auto& l : encoder.layers) l.set_dropout(p);
    for (auto& l : decoder.layers) l.set_dropout(p);
  }

  // _reset_parameters: xavier_uniform_ on every matrix, then MSDeformAttn's own init, the
  // reference point head xavier (gain 1) with a zero bias, and level_embed ~ N(0, 1).
  void init(Rng& rng) {
    encoder.init(rng);
    decoder.init(rng);
    stage.init(rng);
    internal::xavier_uniform_matrices(*this, rng);
    for (auto& l : encoder.layers) l.self_attn.init(rng);
    for (auto& l : decoder.layers) l.cross_attn.init(rng);
    if constexpr (!two_stage) {
      stage.reference_points.init_xavier(rng);
    }
    level_embed.mutable_value().copy_(rng.normal_tensor<T>({L, D}));
  }
  template <class V>
  void visit(V& v) {
    v.child("encoder", encoder);
    v.child("decoder", decoder);
    v.param("level_embed", level_embed);
    v.child("", stage);
  }

  // get_valid_ratio: the valid (unpadded) share of the first column's height and the first
  // row's width. mask [B, h, w] -> ratios of image b written to out[b * L + level] as (w, h).
  static void valid_ratio(const Tensor<uint8_t>& mask, int level, Tensor<T>& out) {
    const int64_t B = mask.dim(0), Hm = mask.dim(1), Wm = mask.dim(2);
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* m = mask.data() + b * Hm * Wm;
      int64_t vh = 0, vw = 0;
      for (int64_t y = 0; y < Hm; ++y) vh += !m[y * Wm];
      for (int64_t x = 0; x < Wm; ++x) vw += !m[x];
      out.data()[(b * L + level) * 2] = T(vw) / T(Wm);
      out.data()[(b * L + level) * 2 + 1] = T(vh) / T(Hm);
    }
  }

  // get_proposal_pos_embed with D / 2 features per coordinate (the reference hard-codes 128,
  // its d_model 256 / 2), temperature 10000, scale 2 pi: proposals [B, Q, 4] (logits) ->
  // [B, Q, 2D], per coordinate sin / cos alternating as the reference's stack + flatten.
  static Tensor<T> get_proposal_pos_embed(const Tensor<T>& proposals) {
    constexpr int N = D / 2;
    const T scale = T(2 * std::numbers::pi), temperature = T(10000);
    T dim_t[N];
    for (int k = 0; k < N; ++k) dim_t[k] = std::pow(temperature, T(2 * (k / 2)) / T(N));
    const int64_t BQ = proposals.numel() / 4;
    auto out = Tensor<T>::empty({proposals.dim(0), proposals.dim(1), 4 * N});
    for (int64_t i = 0; i < BQ; ++i)
      for (int c = 0; c < 4; ++c) {
        const T p = T(1) / (T(1) + std::exp(-proposals.data()[i * 4 + c])) * scale;
        T* o = out.data() + (i * 4 + c) * N;
        for (int k = 0; k < N; k += 2) {
          o[k] = std::sin(p / dim_t[k]);
          o[k + 1] = std::cos(p / dim_t[k + 1]);
        }
      }
    return out;
  }

  // gen_encoder_output_proposals' boxes: per level and pixel (cx, cy) = (x + 0.5, y + 0.5) /
  // valid size, w = h = 0.05 * 2^level, as logits; +inf on padding and where any coordinate is
  // outside (0.01, 0.99). Also marks those positions in `invalid` [B, S].
  // memory_padding_mask [B, S], spatial_shapes [L, 2] -> [B, S, 4]
  static Tensor<T> encoder_output_proposals(const Tensor<uint8_t>& memory_padding_mask,
                                            const Tensor<int64_t>& spatial_shapes, Tensor<uint8_t>& invalid) {
    const int64_t B = memory_padding_mask.dim(0), S = memory_padding_mask.dim(1);
    auto out = Tensor<T>::empty({B, S, 4});
    invalid = Tensor<uint8_t>::zeros({B, S});
    const T inf = std::numeric_limits<T>::infinity();
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* m = memory_padding_mask.data() + b * S;
      int64_t cur = 0;
      for (int l = 0; l < L; ++l) {
        const int64_t Hl = spatial_shapes.data()[2 * l], Wl = spatial_shapes.data()[2 * l + 1];
        int64_t vh = 0, vw = 0;
        for (int64_t y = 0; y < Hl; ++y) vh += !m[cur + y * Wl];
        for (int64_t x = 0; x < Wl; ++x) vw += !m[cur + x];
        const T wh = T(1) * T(0.05) * T(std::pow(2.0, l));
        for (int64_t y = 0; y < Hl; ++y)
          for (int64_t x = 0; x < Wl; ++x) {
            const int64_t s = cur + y * Wl + x;
            const T box[4] = {(T(x) + T(0.5)) / T(vw), (T(y) + T(0.5)) / T(vh), wh, wh};
            bool valid = true;
            for (T v : box) valid = valid && v > T(0.01) && v < T(0.99);
            T* o = out.data() + (b * S + s) * 4;
            for (int c = 0; c < 4; ++c) o[c] = std::log(box[c] / (T(1) - box[c]));
            if (m[s] || !valid) {
              for (int c = 0; c < 4; ++c) o[c] = inf;
              invalid.data()[b * S + s] = 1;
            }
          }
        cur += Hl * Wl;
      }
    }
    return out;
  }

  // srcs / pos_embeds: L maps [B, D, h_l, w_l], masks: L masks [B, h_l, w_l] (1 = padding),
  // query_embed [Q, 2D] (single stage: query_pos then tgt; undefined for two-stage), heads as
  // DeformableHeads (bbox_embed for refinement, both for two-stage).
  DeformableTransformerOutput<T> forward(const std::vector<Var<T>>& srcs, const std::vector<Tensor<uint8_t>>& masks,
                                         const std::vector<Var<T>>& pos_embeds, const Var<T>& query_embed,
                                         const DeformableHeads<T>& heads = {}) {
    DETR_CHECK(srcs.size() == size_t(L) && masks.size() == size_t(L) && pos_embeds.size() == size_t(L),
               "DeformableTransformer: expected " << L << " levels of srcs, masks and pos_embeds, got "
                                                  << srcs.size() << ", " << masks.size() << " and "
                                                  << pos_embeds.size());
    DETR_CHECK(srcs[0].rank() == 4, "DeformableTransformer: srcs[0] must be [B, " << D << ", h, w], got "
                                                                                  << srcs[0].shape());
    const int64_t B = srcs[0].dim(0);
    DeformableTransformerOutput<T> out;
    out.spatial_shapes = Tensor<int64_t>::empty({L, 2});
    auto level_start_index = Tensor<int64_t>::empty({L});
    out.valid_ratios = Tensor<T>::empty({B, L, 2});
    std::vector<Var<T>> src_flatten, pos_flatten;
    int64_t S = 0;
    for (int l = 0; l < L; ++l) {
      const Var<T>& src = srcs[size_t(l)];
      DETR_CHECK(src.rank() == 4 && src.dim(0) == B && src.dim(1) == D,
                 "DeformableTransformer: srcs[" << l << "] must be [" << B << ", " << D << ", h, w], got "
                                                << src.shape());
      const int64_t h = src.dim(2), w = src.dim(3);
      DETR_CHECK(masks[size_t(l)].defined() && masks[size_t(l)].shape() == Shape({B, h, w}),
                 "DeformableTransformer: masks[" << l << "] must be [" << B << ", " << h << ", " << w << "], got "
                                                 << masks[size_t(l)].shape());
      DETR_CHECK(pos_embeds[size_t(l)].shape() == src.shape(),
                 "DeformableTransformer: pos_embeds[" << l << "] " << pos_embeds[size_t(l)].shape()
                                                      << " must match srcs[" << l << "] " << src.shape());
      out.spatial_shapes.data()[2 * l] = h;
      out.spatial_shapes.data()[2 * l + 1] = w;
      level_start_index.data()[l] = S;
      S += h * w;
      src_flatten.push_back(transpose(reshape(src, {B, int64_t(D), h * w}), 1, 2));
      pos_flatten.push_back(transpose(reshape(pos_embeds[size_t(l)], {B, int64_t(D), h * w}), 1, 2) +
                            reshape(slice(level_embed, 0, l, l + 1), {1, 1, int64_t(D)}));
      valid_ratio(masks[size_t(l)], l, out.valid_ratios);
    }
    out.mask_flatten = Tensor<uint8_t>::empty({B, S});
    for (int64_t b = 0; b < B; ++b) {
      uint8_t* dst = out.mask_flatten.data() + b * S;
      for (int l = 0; l < L; ++l) {
        const auto& m = masks[size_t(l)];
        const int64_t hw = m.dim(1) * m.dim(2);
        std::copy_n(m.data() + b * hw, hw, dst + level_start_index.data()[l]);
      }
    }
    Var<T> src = concat(src_flatten, 1), pos = concat(pos_flatten, 1);  // [B, S, D]

    out.memory = encoder.forward(src, out.spatial_shapes, level_start_index, out.valid_ratios, pos, out.mask_flatten);

    Var<T> tgt, query_pos, reference_points;
    if constexpr (two_stage) {
      DETR_CHECK(heads.class_embed && heads.bbox_embed,
                 "DeformableTransformer (two-stage): needs the class_embed and bbox_embed heads");
      Tensor<uint8_t> invalid;
      auto proposals = encoder_output_proposals(out.mask_flatten, out.spatial_shapes, invalid);  // [B, S, 4]
      Var<T> output_memory = masked_fill(out.memory, invalid.reshape({B, S, 1}), T(0));
      output_memory = stage.enc_output_norm.forward(stage.enc_output.forward(output_memory));
      constexpr int N = C.num_decoder_layers;
      out.enc_outputs_class = heads.class_embed(N, output_memory);
      out.enc_outputs_coord_unact = heads.bbox_embed(N, output_memory) + Var<T>(proposals);
      const int64_t Q = num_queries;
      DETR_CHECK(Q <= S, "DeformableTransformer (two-stage): " << Q << " proposals from " << S << " positions");
      Var<T> class0 = reshape(slice(out.enc_outputs_class.detach(), 2, 0, 1), {B, S});
      const Tensor<int64_t> idx = topk(class0, Q, 1).indices;  // [B, Q]
      auto idx4 = Tensor<int64_t>::empty({B, Q, 4});
      for (int64_t i = 0; i < B * Q; ++i)
        for (int c = 0; c < 4; ++c) idx4.data()[i * 4 + c] = idx.data()[i];
      const Tensor<T> topk_coords_unact = gather(out.enc_outputs_coord_unact.detach(), 1, idx4).value();
      reference_points = sigmoid(Var<T>(topk_coords_unact));
      Var<T> pos_trans_out =
          stage.pos_trans_norm.forward(stage.pos_trans.forward(Var<T>(get_proposal_pos_embed(topk_coords_unact))));
      query_pos = slice(pos_trans_out, 2, 0, D);
      tgt = slice(pos_trans_out, 2, D, 2 * D);
    } else {
      DETR_CHECK(query_embed.defined() && query_embed.rank() == 2 && query_embed.dim(1) == 2 * D,
                 "DeformableTransformer: query_embed must be [Q, " << 2 * D << "], got "
                                                                   << (query_embed.defined() ? query_embed.shape().str()
                                                                                             : std::string("undefined")));
      const int64_t Q = query_embed.dim(0);
      query_pos = expand(unsqueeze(slice(query_embed, 1, 0, D), 0), {B, Q, int64_t(D)});
      tgt = expand(unsqueeze(slice(query_embed, 1, D, 2 * D), 0), {B, Q, int64_t(D)});
      reference_points = sigmoid(stage.reference_points.forward(query_pos));
    }
    out.init_reference = reference_points;
    auto dec = decoder.forward(tgt, reference_points, out.memory, out.spatial_shapes, level_start_index,
                               out.valid_ratios, query_pos, out.mask_flatten, heads.bbox_embed);
    out.hs = std::move(dec.hs);
    out.inter_references = std::move(dec.references);
    out.refined_boxes = std::move(dec.boxes);
    return out;
  }
};

}  // namespace detr
