#pragma once
// MSDeformAttn<D, H, L, P>: the multi-scale deformable attention module of Deformable DETR
// (models/ops/modules/ms_deform_attn.py), with its parameter names (sampling_offsets,
// attention_weights, value_proj, output_proj), its _reset_parameters initialisation and its
// forward: 2-d reference points get offsets normalised by the level's (W, H), 4-d reference boxes
// get offsets / P * (w, h) * 0.5; the input padding mask zeroes the projected values. The
// sampling itself is the fused op in ops/ms_deform_attn.hpp.
#include <cmath>
#include <numbers>

#include "detr/nn/linear.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/indexing.hpp"
#include "detr/ops/ms_deform_attn.hpp"
#include "detr/ops/shape.hpp"
#include "detr/ops/softmax.hpp"

namespace detr {

/// \tparam D d_model   \tparam H heads (D % H == 0)   \tparam L feature levels
/// \tparam P sampling points per head and level   \tparam T scalar type
template <int D, int H, int L, int P, class T = float>
struct MSDeformAttn {
  static_assert(H > 0 && L > 0 && P > 0, "MSDeformAttn<D, H, L, P>: H, L and P must be positive");
  static_assert(D % H == 0, "MSDeformAttn<D, H, L, P>: d_model D must be divisible by the number of heads H");
  using Scalar = T;
  static constexpr int d_model = D, n_heads = H, n_levels = L, n_points = P, head_dim = D / H;

  Linear<D, H * L * P * 2, T> sampling_offsets;
  Linear<D, H * L * P, T> attention_weights;
  Linear<D, D, T> value_proj;
  Linear<D, D, T> output_proj;

  // _reset_parameters: zero offset weights and a bias pointing head h along the angle 2 pi h / H
  // (scaled so the larger coordinate is 1) times the point index + 1, zero attention weights
  // (uniform attention at start), xavier-uniform value / output projections with zero biases.
  void init(Rng& rng) {
    sampling_offsets.weight.mutable_value().fill_(T(0));
    T* bias = sampling_offsets.bias.mutable_value().data();
    for (int h = 0; h < H; ++h) {
      // As the reference, in float32: arange(H) * (2 pi / H), cos / sin, divided by the max |.|.
      const float theta = float(h) * float(2.0 * std::numbers::pi / H);
      const float cx = std::cos(theta), cy = std::sin(theta), m = std::max(std::abs(cx), std::abs(cy));
      for (int l = 0; l < L; ++l)
        for (int p = 0; p < P; ++p) {
          T* b = bias + ((h * L + l) * P + p) * 2;
          b[0] = T((cx / m) * float(p + 1));
          b[1] = T((cy / m) * float(p + 1));
        }
    }
    attention_weights.weight.mutable_value().fill_(T(0));
    attention_weights.bias.mutable_value().fill_(T(0));
    value_proj.init_xavier(rng);
    output_proj.init_xavier(rng);
  }

  template <class V>
  void visit(V& v) {
    v.child("sampling_offsets", sampling_offsets);
    v.child("attention_weights", attention_weights);
    v.child("value_proj", value_proj);
    v.child("output_proj", output_proj);
  }

  // query [B, Q, D], reference_points [B, Q, L, 2] (x, y in [0, 1]) or [B, Q, L, 4] (cx, cy, w, h),
  // input_flatten [B, S, D], spatial_shapes [L, 2] (H_l, W_l), level_start_index [L],
  // input_padding_mask [B, S] (1 = padding; optional) -> [B, Q, D]
  Var<T> forward(const Var<T>& query, const Var<T>& reference_points, const Var<T>& input_flatten,
                 const Tensor<int64_t>& spatial_shapes, const Tensor<int64_t>& level_start_index,
                 const Tensor<uint8_t>& input_padding_mask = {}) const {
    DETR_CHECK(query.rank() == 3 && query.dim(2) == D,
               name() << ": query must be [B, Q, " << D << "], got " << query.shape());
    const int64_t B = query.dim(0), Q = query.dim(1);
    DETR_CHECK(input_flatten.rank() == 3 && input_flatten.dim(0) == B && input_flatten.dim(2) == D,
               name() << ": input_flatten must be [" << B << ", S, " << D << "], got " << input_flatten.shape());
    const int64_t S = input_flatten.dim(1);
    DETR_CHECK(spatial_shapes.shape() == Shape({L, 2}),
               name() << ": spatial_shapes must be [" << L << ", 2], got " << spatial_shapes.shape());
    const int64_t c = reference_points.rank() == 4 ? reference_points.dim(3) : 0;
    DETR_CHECK(reference_points.rank() == 4 && reference_points.dim(0) == B && reference_points.dim(1) == Q &&
                   reference_points.dim(2) == L && (c == 2 || c == 4),
               name() << ": reference_points must be [" << B << ", " << Q << ", " << L << ", 2] or [" << B << ", "
                      << Q << ", " << L << ", 4], got " << reference_points.shape());

    Var<T> value = value_proj.forward(input_flatten);  // [B, S, D]
    if (input_padding_mask.defined()) {
      DETR_CHECK(input_padding_mask.shape() == Shape({B, S}),
                 name() << ": input_padding_mask must be [" << B << ", " << S << "], got " << input_padding_mask.shape());
      value = masked_fill(value, input_padding_mask.reshape({B, S, 1}), T(0));
    }
    value = reshape(value, {B, S, H, head_dim});
    Var<T> offsets = reshape(sampling_offsets.forward(query), {B, Q, H, L, P, 2});
    Var<T> weights = reshape(softmax(reshape(attention_weights.forward(query), {B, Q, H, L * P})), {B, Q, H, L, P});

    Var<T> out;  // [B, Q, D]
    if (c == 2) {  // locations = reference + offsets / (W_l, H_l), fused into the sampling
      out = ms_deform_attn_from_offsets(value, spatial_shapes, level_start_index, reference_points, offsets, weights);
    } else {
      Var<T> centre = reshape(slice(reference_points, 3, 0, 2), {B, Q, 1, L, 1, 2});
      Var<T> size = reshape(slice(reference_points, 3, 2, 4), {B, Q, 1, L, 1, 2});
      // offsets / n_points * wh * 0.5, in the reference's order (a true division by P).
      Var<T> locations = centre + (offsets / constant(Tensor<T>::full({1}, T(P)))) * size * T(0.5);
      out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights);
    }
    return output_proj.forward(out);
  }

 private:
  static std::string name() {
    return "MSDeformAttn<" + std::to_string(D) + ", " + std::to_string(H) + ", " + std::to_string(L) + ", " +
           std::to_string(P) + ">";
  }
};

}  // namespace detr
