#pragma once
// The layers of Deformable DETR's transformer (fundamentalvision/Deformable-DETR
// models/deformable_transformer.py): post-norm encoder and decoder layers with ReLU FFNs, the
// encoder stack with its per-pixel reference points, and the decoder stack with its optional
// iterative box refinement. Batch-first like the reference ([B, S, D] / [B, Q, D]); the
// official state_dict names:
//
//   encoder.layers.N.{self_attn (MSDeformAttn), norm1, linear1, linear2, norm2}.*
//   decoder.layers.N.{cross_attn (MSDeformAttn), norm1, self_attn (nn.MultiheadAttention), norm2,
//                     linear1, linear2, norm3}.*
#include <functional>
#include <vector>

#include "detr/nn/dropout.hpp"
#include "detr/nn/ffn.hpp"
#include "detr/nn/layer_norm.hpp"
#include "detr/nn/module.hpp"
#include "detr/nn/ms_deform_attn.hpp"
#include "detr/nn/multihead_attention.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

namespace internal {
template <class T>
Var<T> add_pos(const Var<T>& x, const Var<T>& pos) {
  return pos.defined() ? x + pos : x;
}
}  // namespace internal

/// DeformableTransformerEncoderLayer: multi-scale deformable self-attention + FFN, post-norm.
/// \tparam D d_model   \tparam H heads   \tparam F FFN width   \tparam L levels   \tparam P points
template <int D, int H, int F, int L, int P, class T = float>
struct DeformableTransformerEncoderLayer {
  using Scalar = T;
  MSDeformAttn<D, H, L, P, T> self_attn;
  Dropout<T> dropout1;
  LayerNorm<D, T> norm1;
  FFN<D, F, "norm2", T> ffn;  // linear1, dropout2, linear2, dropout3, norm2

  void set_dropout(double p) {
    dropout1.p = p;
    ffn.set_dropout(p);
  }
  void init(Rng& rng) {
    self_attn.init(rng);
    dropout1.init(rng);
    norm1.init(rng);
    ffn.init(rng);
    set_dropout(0.1);
  }
  template <class V>
  void visit(V& v) {
    v.child("self_attn", self_attn);
    v.child("", dropout1);
    v.child("norm1", norm1);
    v.child("", ffn);
  }

  // src [B, S, D], pos [B, S, D] (or undefined), reference_points [B, S, L, 2],
  // spatial_shapes [L, 2], level_start_index [L], padding_mask [B, S] (1 = padding) -> [B, S, D].
  // The query carries the position, the sampled values do not.
  Var<T> forward(const Var<T>& src, const Var<T>& pos, const Var<T>& reference_points,
                 const Tensor<int64_t>& spatial_shapes, const Tensor<int64_t>& level_start_index,
                 const Tensor<uint8_t>& padding_mask = {}) {
    Var<T> src2 = self_attn.forward(internal::add_pos(src, pos), reference_points, src, spatial_shapes,
                                    level_start_index, padding_mask);
    return ffn.forward(norm1.forward(src + dropout1.forward(src2)));
  }
};

/// DeformableTransformerDecoderLayer: self-attention among the queries (nn.MultiheadAttention),
/// deformable cross-attention into the encoder memory, FFN; post-norm.
template <int D, int H, int F, int L, int P, class T = float>
struct DeformableTransformerDecoderLayer {
  using Scalar = T;
  MSDeformAttn<D, H, L, P, T> cross_attn;
  Dropout<T> dropout1;
  LayerNorm<D, T> norm1;
  MultiheadAttention<D, H, T> self_attn;
  Dropout<T> dropout2;
  LayerNorm<D, T> norm2;
  FFN<D, F, "norm3", T> ffn;  // linear1, dropout3, linear2, dropout4, norm3

  // The reference passes one `dropout` to the self-attention weights and every residual branch.
  void set_dropout(double p) {
    dropout1.p = dropout2.p = p;
    self_attn.dropout = p;
    ffn.set_dropout(p);
  }
  void init(Rng& rng) {
    cross_attn.init(rng);
    dropout1.init(rng);
    norm1.init(rng);
    self_attn.init(rng);
    dropout2.init(rng);
    norm2.init(rng);
    ffn.init(rng);
    set_dropout(0.1);
  }
  template <class V>
  void visit(V& v) {
    v.child("cross_attn", cross_attn);
    v.child("", dropout1);
    v.child("norm1", norm1);
    v.child("self_attn", self_attn);
    v.child("", dropout2);
    v.child("norm2", norm2);
    v.child("", ffn);
  }

  // tgt [B, Q, D], query_pos [B, Q, D], reference_points [B, Q, L, 2] or [B, Q, L, 4],
  // src [B, S, D], src_spatial_shapes [L, 2], level_start_index [L],
  // src_padding_mask [B, S] (1 = padding) -> [B, Q, D]
  Var<T> forward(const Var<T>& tgt, const Var<T>& query_pos, const Var<T>& reference_points, const Var<T>& src,
                 const Tensor<int64_t>& src_spatial_shapes, const Tensor<int64_t>& level_start_index,
                 const Tensor<uint8_t>& src_padding_mask = {}) {
    Var<T> qk = internal::add_pos(tgt, query_pos);
    Var<T> t = norm2.forward(tgt + dropout2.forward(self_attn.forward(qk, qk, tgt)));
    Var<T> t2 = cross_attn.forward(internal::add_pos(t, query_pos), reference_points, src, src_spatial_shapes,
                                   level_start_index, src_padding_mask);
    t = norm1.forward(t + dropout1.forward(t2));
    return ffn.forward(t);
  }
};

/// DeformableTransformerEncoder: `layers.N.`, every layer attending around each pixel's own
/// centre on every level.
template <int D, int H, int F, int L, int P, int N, class T = float>
struct DeformableTransformerEncoder {
  using Scalar = T;
  Repeat<N, DeformableTransformerEncoderLayer<D, H, F, L, P, T>> layers;

  void init(Rng& rng) { layers.init(rng); }
  template <class V>
  void visit(V& v) {
    v.child("layers", layers);
  }

  // get_reference_points: pixel centres (x + 0.5, y + 0.5) of every level divided by the
  // level's valid size (valid_ratio * size), then scaled by every level's valid ratio, in float
  // in the reference's order of operations.
  // spatial_shapes [L, 2] (H_l, W_l), valid_ratios [B, L, 2] (w, h) -> [B, S, L, 2]
  static Tensor<T> get_reference_points(const Tensor<int64_t>& spatial_shapes, const Tensor<T>& valid_ratios) {
    const int64_t B = valid_ratios.dim(0);
    int64_t S = 0;
    for (int l = 0; l < L; ++l) S += spatial_shapes.data()[2 * l] * spatial_shapes.data()[2 * l + 1];
    auto out = Tensor<T>::empty({B, S, L, 2});
    const T* vr = valid_ratios.data();
    T* o = out.data();
    for (int64_t b = 0; b < B; ++b) {
      int64_t s = 0;
      for (int l = 0; l < L; ++l) {
        const int64_t Hl = spatial_shapes.data()[2 * l], Wl = spatial_shapes.data()[2 * l + 1];
        const T div_y = vr[(b * L + l) * 2 + 1] * T(Hl), div_x = vr[(b * L + l) * 2] * T(Wl);
        for (int64_t y = 0; y < Hl; ++y)
          for (int64_t x = 0; x < Wl; ++x, ++s) {
            const T ry = (T(y) + T(0.5)) / div_y, rx = (T(x) + T(0.5)) / div_x;
            for (int m = 0; m < L; ++m) {
              o[((b * S + s) * L + m) * 2] = rx * vr[(b * L + m) * 2];
              o[((b * S + s) * L + m) * 2 + 1] = ry * vr[(b * L + m) * 2 + 1];
            }
          }
      }
    }
    return out;
  }

  // src [B, S, D], spatial_shapes [L, 2], level_start_index [L], valid_ratios [B, L, 2],
  // pos [B, S, D], padding_mask [B, S] -> memory [B, S, D]
  Var<T> forward(Var<T> src, const Tensor<int64_t>& spatial_shapes, const Tensor<int64_t>& level_start_index,
                 const Tensor<T>& valid_ratios, const Var<T>& pos, const Tensor<uint8_t>& padding_mask) {
    Var<T> reference_points(get_reference_points(spatial_shapes, valid_ratios));
    for (auto& layer : layers)
      src = layer.forward(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask);
    return src;
  }
};

template <class T>
struct DeformableDecoderOutput {
  std::vector<Var<T>> hs;          // one [B, Q, D] per layer (return_intermediate)
  std::vector<Var<T>> references;  // the reference after each layer, [B, Q, 2] or [B, Q, 4]
                                   // (detached when refined; the input reference otherwise)
  std::vector<Var<T>> boxes;       // with a box head: each layer's refined boxes, sigmoid, [B, Q, 4],
                                   // not detached (the reference's outputs_coord of that layer)
};

/// DeformableTransformerDecoder: `layers.N.`, no final norm, every layer's output returned. With
/// a box head (iterative box refinement) each layer's output moves the reference:
/// sigmoid(bbox_embed[lid](output) + inverse_sigmoid(reference)) (only the centre for a 2-d
/// reference), detached before the next layer.
template <int D, int H, int F, int L, int P, int N, class T = float>
struct DeformableTransformerDecoder {
  using Scalar = T;
  static constexpr int num_layers = N;
  Repeat<N, DeformableTransformerDecoderLayer<D, H, F, L, P, T>> layers;

  // Layer index and that layer's output [B, Q, D] -> the box delta [B, Q, 4].
  using BoxHead = std::function<Var<T>(int, const Var<T>&)>;

  void init(Rng& rng) { layers.init(rng); }
  template <class V>
  void visit(V& v) {
    v.child("layers", layers);
  }

  // tgt [B, Q, D], reference_points [B, Q, 2] or [B, Q, 4] in (0, 1), src [B, S, D],
  // src_spatial_shapes [L, 2], src_level_start_index [L], src_valid_ratios [B, L, 2],
  // query_pos [B, Q, D], src_padding_mask [B, S]
  DeformableDecoderOutput<T> forward(Var<T> tgt, Var<T> reference_points, const Var<T>& src,
                                     const Tensor<int64_t>& src_spatial_shapes,
                                     const Tensor<int64_t>& src_level_start_index, const Tensor<T>& src_valid_ratios,
                                     const Var<T>& query_pos, const Tensor<uint8_t>& src_padding_mask,
                                     const BoxHead& bbox_embed = {}) {
    const int64_t B = tgt.dim(0), Q = tgt.dim(1);
    const Var<T> vr(src_valid_ratios);
    const Var<T> vr2 = reshape(vr, {B, 1, L, 2}), vr4 = reshape(concat({vr, vr}, -1), {B, 1, L, 4});
    DeformableDecoderOutput<T> out;
    for (int lid = 0; lid < N; ++lid) {
      const int64_t c = reference_points.dim(2);
      Var<T> ref_input = reshape(reference_points, {B, Q, 1, c}) * (c == 4 ? vr4 : vr2);  // [B, Q, L, c]
      tgt = layers[lid].forward(tgt, query_pos, ref_input, src, src_spatial_shapes, src_level_start_index,
                                src_padding_mask);
      if (bbox_embed) {
        Var<T> tmp = bbox_embed(lid, tgt);  // [B, Q, 4]
        Var<T> box = c == 4 ? sigmoid(tmp + inverse_sigmoid(reference_points))
                            : sigmoid(concat({slice(tmp, 2, 0, 2) + inverse_sigmoid(reference_points),
                                              slice(tmp, 2, 2, 4)}, 2));
        out.boxes.push_back(box);
        reference_points = box.detach();
      }
      out.hs.push_back(tgt);
      out.references.push_back(reference_points);
    }
    return out;
  }
};

}  // namespace detr
