#pragma once
// MultiheadAttention<D, H>: torch.nn.MultiheadAttention(D, H, batch_first=True) with separate
// query / key / value inputs, boolean or additive attn_mask, key_padding_mask and dropout on the
// attention weights; parameters named in_proj_weight, in_proj_bias, out_proj.weight/bias.
// The attention itself is the fused op in ops/attention.hpp.
#include <cmath>

#include "detr/nn/linear.hpp"
#include "detr/ops/attention.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

/// \tparam D embed dim   \tparam H heads (D % H == 0)   \tparam T scalar type
template <int D, int H, class T = float>
struct MultiheadAttention {
  static_assert(H > 0, "MultiheadAttention<D, H>: H must be positive");
  static_assert(D % H == 0, "MultiheadAttention<D, H>: the embed dim D must be divisible by the number of heads H");
  using Scalar = T;
  static constexpr int embed_dim = D, num_heads = H, head_dim = D / H;

  Var<T> in_proj_weight = parameter<T>({3 * D, D});  // [3D, D]: query, key, value rows
  Var<T> in_proj_bias = parameter<T>({3 * D});       // [3D]
  Linear<D, D, T> out_proj;
  double dropout = 0.0;  // on the attention weights
  bool training = true;
  Rng rng{0};

  // torch's _reset_parameters: xavier_uniform_ on the stacked in_proj_weight, zero biases; the
  // out_proj weight keeps nn.Linear's default init.
  void init(Rng& r) {
    double bound = std::sqrt(6.0 / double(D + 3 * D));
    in_proj_weight.mutable_value().copy_(r.uniform_tensor<T>({3 * D, D}, -bound, bound));
    in_proj_bias.mutable_value().fill_(T(0));
    out_proj.init(r);
    out_proj.bias.mutable_value().fill_(T(0));
    rng = Rng(r.next_u64());
  }
  template <class V>
  void visit(V& v) {
    v.param("in_proj_weight", in_proj_weight);
    v.param("in_proj_bias", in_proj_bias);
    v.child("out_proj", out_proj);
    v.mode(training);
    v.random(rng);
  }

  // query [B, Lq, D], key [B, Lk, D], value [B, Lk, D] -> [B, Lq, D]
  // attn_mask: [Lq, Lk] or [B*H, Lq, Lk] (bool: true = blocked, or additive);
  // key_padding_mask [B, Lk]: 1 = padding.
  Var<T> forward(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                 const AttentionMask<T>& attn_mask = {}, const Tensor<uint8_t>& key_padding_mask = {}) {
    DETR_CHECK(query.rank() == 3 && query.dim(2) == D,
               "MultiheadAttention<" << D << ", " << H << ">: query must be [B, Lq, " << D << "], got " << query.shape());
    DETR_CHECK(key.rank() == 3 && key.dim(2) == D && value.rank() == 3 && value.dim(2) == D,
               "MultiheadAttention<" << D << ", " << H << ">: key and value must be [B, Lk, " << D
                                     << "], got " << key.shape() << " and " << value.shape());
    Var<T> q = linear(query, slice(in_proj_weight, 0, 0, D), slice(in_proj_bias, 0, 0, D));
    Var<T> k = linear(key, slice(in_proj_weight, 0, D, 2 * D), slice(in_proj_bias, 0, D, 2 * D));
    Var<T> v = linear(value, slice(in_proj_weight, 0, 2 * D, 3 * D), slice(in_proj_bias, 0, 2 * D, 3 * D));
    Var<T> o = multi_head_attention(q, k, v, H, attn_mask, key_padding_mask, dropout, training, &rng);
    return out_proj.forward(o);
  }
};

}  // namespace detr
