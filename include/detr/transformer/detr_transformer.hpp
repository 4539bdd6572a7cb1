#pragma once
// DETR's post-norm transformer (facebookresearch/detr models/transformer.py with
// normalize_before=False, return_intermediate_dec=True) as types whose sizes are template
// arguments, with the official state_dict names:
//
//   encoder.layers.N.{self_attn, linear1, linear2, norm1, norm2}.*
//   decoder.layers.N.{self_attn, multihead_attn, linear1, linear2, norm1, norm2, norm3}.*
//   decoder.norm.*
//
// Layout. The reference is sequence-first: src / pos [HW, B, D] (flattened from [B, D, H, W] by
// flatten(2).permute(2, 0, 1)), mask [B, HW], query_embed [Q, D] repeated to [Q, B, D], and it
// returns hs [L, B, Q, D] (after hs.transpose(1, 2)) and memory [B, D, H, W]. Here everything
// is batch-first: src / pos [B, HW, D] (the reference's tensors permuted (1, 0, 2)), mask
// [B, HW] (1 = padding), query_embed [Q, D]; the result holds hs [L, B, Q, D] exactly as the
// reference returns it and memory [B, HW, D] (the reference's memory is its permute(0, 2, 1)
// viewed as [B, D, H, W]).
#include <cmath>
#include <vector>

#include "detr/nn/dropout.hpp"
#include "detr/nn/ffn.hpp"
#include "detr/nn/layer_norm.hpp"
#include "detr/nn/module.hpp"
#include "detr/nn/multihead_attention.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

namespace internal {
// torch.nn.init.xavier_uniform_ on every parameter with more than one dim, as the reference's
// Transformer._reset_parameters does after the submodules' own init (biases and LayerNorm
// affine parameters keep their defaults). fan_in = size(1) * receptive field, fan_out =
// size(0) * receptive field.
template <Module M>
void xavier_uniform_matrices(M& m, Rng& rng) {
  using T = typename M::Scalar;
  for (auto& p : named_parameters(m)) {
    const Shape& s = p.var->shape();
    if (s.rank() < 2) continue;
    int64_t receptive = 1;
    for (int i = 2; i < s.rank(); ++i) receptive *= s[i];
    const double bound = std::sqrt(6.0 / double((s[0] + s[1]) * receptive));
    p.var->mutable_value().copy_(rng.uniform_tensor<T>(s, -bound, bound));
  }
}

// x + pos, or x when pos is undefined (the reference's with_pos_embed).
template <class T>
Var<T> with_pos_embed(const Var<T>& x, const Var<T>& pos) {
  return pos.defined() ? x + pos : x;
}
}  // namespace internal

/// DETR's TransformerEncoderLayer (forward_post).
/// \tparam D model width   \tparam H heads   \tparam F FFN hidden width
template <int D, int H, int F, class T = float>
struct DetrEncoderLayer {
  using Scalar = T;
  MultiheadAttention<D, H, T> self_attn;
  Dropout<T> dropout1;
  LayerNorm<D, T> norm1;
  FFN<D, F, "norm2", T> ffn;  // linear1, dropout, linear2, dropout2, norm2

  // The reference passes one `dropout` to the attention weights and every residual branch.
  void set_dropout(double p) {
    self_attn.dropout = p;
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

  // src [B, L, D], pos [B, L, D] (or undefined), key_padding_mask [B, L] (1 = padding, or
  // empty) -> [B, L, D]. Queries and keys carry the position, values do not.
  Var<T> forward(const Var<T>& src, const Var<T>& pos = {}, const Tensor<uint8_t>& key_padding_mask = {}) {
    Var<T> qk = internal::with_pos_embed(src, pos);
    Var<T> src2 = self_attn.forward(qk, qk, src, {}, key_padding_mask);
    return ffn.forward(norm1.forward(src + dropout1.forward(src2)));
  }
};

/// DETR's TransformerDecoderLayer (forward_post).
template <int D, int H, int F, class T = float>
struct DetrDecoderLayer {
  using Scalar = T;
  MultiheadAttention<D, H, T> self_attn;
  MultiheadAttention<D, H, T> multihead_attn;
  Dropout<T> dropout1, dropout2;
  LayerNorm<D, T> norm1, norm2;
  FFN<D, F, "norm3", T> ffn;  // linear1, dropout, linear2, dropout3, norm3

  void set_dropout(double p) {
    self_attn.dropout = multihead_attn.dropout = p;
    dropout1.p = dropout2.p = p;
    ffn.set_dropout(p);
  }
  void init(Rng& rng) {
    self_attn.init(rng);
    multihead_attn.init(rng);
    dropout1.init(rng);
    dropout2.init(rng);
    norm1.init(rng);
    norm2.init(rng);
    ffn.init(rng);
    set_dropout(0.1);
  }
  template <class V>
  void visit(V& v) {
    v.child("self_attn", self_attn);
    v.child("multihead_attn", multihead_attn);
    v.child("", dropout1);
    v.child("", dropout2);
    v.child("norm1", norm1);
    v.child("norm2", norm2);
    v.child("", ffn);
  }

  // tgt [B, Q, D], memory [B, L, D], memory_key_padding_mask [B, L] (1 = padding, or empty),
  // pos [B, L, D] (or undefined), query_pos [B, Q, D] (or undefined) -> [B, Q, D].
  Var<T> forward(const Var<T>& tgt, const Var<T>& memory, const Tensor<uint8_t>& memory_key_padding_mask = {},
                 const Var<T>& pos = {}, const Var<T>& query_pos = {}) {
    Var<T> qk = internal::with_pos_embed(tgt, query_pos);
    Var<T> t = norm1.forward(tgt + dropout1.forward(self_attn.forward(qk, qk, tgt)));
    Var<T> t2 = multihead_attn.forward(internal::with_pos_embed(t, query_pos), internal::with_pos_embed(memory, pos),
                                       memory, {}, memory_key_padding_mask);
    t = norm2.forward(t + dropout2.forward(t2));
    return ffn.forward(t);
  }
};

/// The encoder stack: `layers.N.`, no final norm (the reference's encoder_norm is None when
/// normalize_before is False).
template <int D, int H, int F, int N, class T = float>
struct DetrEncoder {
  using Scalar = T;
  Repeat<N, DetrEncoderLayer<D, H, F, T>> layers;

  void init(Rng& rng) { layers.init(rng); }
  template <class V>
  void visit(V& v) {
    v.child("layers", layers);
  }
  // src [B, L, D], pos [B, L, D], mask [B, L] -> memory [B, L, D]
  Var<T> forward(Var<T> src, const Var<T>& pos = {}, const Tensor<uint8_t>& mask = {}) {
    for (auto& layer : layers) src = layer.forward(src, pos, mask);
    return src;
  }
};

/// The decoder stack: `layers.N.` and the final `norm`, applied to every layer's output
/// (return_intermediate=True): the reference stacks norm(output) after each layer, and its last
/// entry is norm of the last layer's output.
template <int D, int H, int F, int N, class T = float>
struct DetrDecoder {
  using Scalar = T;
  Repeat<N, DetrDecoderLayer<D, H, F, T>> layers;
  LayerNorm<D, T> norm;

  void init(Rng& rng) {
    layers.init(rng);
    norm.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("layers", layers);
    v.child("norm", norm);
  }
  // tgt [B, Q, D], memory [B, L, D], mask [B, L], pos [B, L, D], query_pos [B, Q, D]
  // -> N outputs, each [B, Q, D], after the final norm.
  std::vector<Var<T>> forward(Var<T> tgt, const Var<T>& memory, const Tensor<uint8_t>& memory_key_padding_mask = {},
                              const Var<T>& pos = {}, const Var<T>& query_pos = {}) {
    std::vector<Var<T>> out;
    out.reserve(N);
    for (auto& layer : layers) {
      tgt = layer.forward(tgt, memory, memory_key_padding_mask, pos, query_pos);
      out.push_back(norm.forward(tgt));
    }
    return out;
  }
};

template <class T>
struct DetrTransformerOutput {
  Var<T> hs;                   // [L, B, Q, D]: every decoder layer's output after decoder.norm
  std::vector<Var<T>> layers;  // the same, one [B, Q, D] per decoder layer
  Var<T> memory;               // [B, HW, D]: the encoder output
};

/// DETR's Transformer. \tparam EncLayers, DecLayers stack depths (6 and 6 in DETR).
template <int D, int H, int F, int EncLayers, int DecLayers, class T = float>
struct DetrTransformer {
  static_assert(D % H == 0, "DetrTransformer<D, H, ...>: D must be divisible by H");
  using Scalar = T;
  static constexpr int d_model = D, nhead = H, dim_feedforward = F, num_decoder_layers = DecLayers;
  DetrEncoder<D, H, F, EncLayers, T> encoder;
  DetrDecoder<D, H, F, DecLayers, T> decoder;

  // One dropout probability for every dropout in the model (the reference's `dropout`).
  void set_dropout(double p) {
    for (auto& l : encoder.layers) l.set_dropout(p);
    for (auto& l : decoder.layers) l.set_dropout(p);
  }
  void init(Rng& rng) {
    encoder.init(rng);
    decoder.init(rng);
    internal::xavier_uniform_matrices(*this, rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("encoder", encoder);
    v.child("decoder", decoder);
  }

  // src [B, HW, D], mask [B, HW] (1 = padding, or empty), query_embed [Q, D], pos [B, HW, D].
  // The decoder starts from tgt = 0; the learned queries enter only as query_pos.
  DetrTransformerOutput<T> forward(const Var<T>& src, const Tensor<uint8_t>& mask, const Var<T>& query_embed,
                                   const Var<T>& pos) {
    DETR_CHECK(src.rank() == 3 && src.dim(2) == D,
               "DetrTransformer<" << D << ", ...>: src must be [B, HW, " << D << "], got " << src.shape());
    const int64_t B = src.dim(0), L = src.dim(1);
    DETR_CHECK(pos.defined(), "DetrTransformer: pos must be given, [B, HW, " << D << "] like src " << src.shape());
    DETR_CHECK(pos.shape() == src.shape(),
               "DetrTransformer: pos " << pos.shape() << " must match src " << src.shape());
    DETR_CHECK(!mask.defined() || mask.shape() == Shape({B, L}),
               "DetrTransformer: mask must be [B, HW] = [" << B << ", " << L << "], got " << mask.shape());
    DETR_CHECK(query_embed.rank() == 2 && query_embed.dim(1) == D,
               "DetrTransformer: query_embed must be [Q, " << D << "], got " << query_embed.shape());
    const int64_t Q = query_embed.dim(0);
    Var<T> query_pos = expand(query_embed, {B, Q, int64_t(D)});  // [B, Q, D]
    Var<T> tgt(Tensor<T>::zeros({B, Q, int64_t(D)}));
    DetrTransformerOutput<T> out;
    out.memory = encoder.forward(src, pos, mask);
    out.layers = decoder.forward(tgt, out.memory, mask, pos, query_pos);
    std::vector<Var<T>> stacked;
    stacked.reserve(out.layers.size());
    for (auto& h : out.layers) stacked.push_back(unsqueeze(h, 0));
    out.hs = concat(stacked, 0);
    return out;
  }
};

}  // namespace detr
