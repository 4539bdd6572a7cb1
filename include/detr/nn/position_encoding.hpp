#pragma once
// Positional encodings of a feature map, from its padding mask: PositionEmbeddingSine and
// PositionEmbeddingLearned of facebookresearch/detr models/position_encoding.py, with Deformable
// DETR's sine variant (fundamentalvision/Deformable-DETR, same file) as an option. Both return
// [B, 2 NumPosFeats, H, W]; DETR uses NumPosFeats = d_model / 2.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/nn/embedding.hpp"
#include "detr/nn/module.hpp"
#include "detr/ops/shape.hpp"

namespace detr {

// How the sine embedding normalises the cumulative pixel counts.
enum class SineNorm {
  None,       // normalize=False: raw counts 1, 2, ... (DETR's default constructor argument)
  Detr,       // y / (y_last + eps) * scale (DETR builds it with normalize=True)
  Deformable  // (y - 0.5) / (y_last + eps) * scale (Deformable DETR's normalize=True)
};

/// \tparam NumPosFeats features per axis (even; the output has 2 NumPosFeats channels)
/// \tparam T scalar type   \tparam Norm the normalisation (DETR's by default)
template <int NumPosFeats, class T = float, SineNorm Norm = SineNorm::Detr>
struct PositionEmbeddingSine {
  static_assert(NumPosFeats > 0 && NumPosFeats % 2 == 0,
                "PositionEmbeddingSine<NumPosFeats>: NumPosFeats must be positive and even "
                "(sin and cos take alternate features)");
  using Scalar = T;
  static constexpr int num_pos_feats = NumPosFeats, channels = 2 * NumPosFeats;
  T temperature = T(10000);
  T scale = T(2 * std::numbers::pi);

  void init(Rng&) {}
  template <class V>
  void visit(V&) {}

  // mask [B, H, W] (1 = padding) -> [B, 2 NumPosFeats, H, W], no gradient. Channels
  // [0, NumPosFeats) encode y, the rest x; within each, feature 2k is sin(e / t_k) and 2k + 1 is
  // cos(e / t_k) with t_k = temperature^(2k / NumPosFeats) (the reference's stack + flatten).
  // Everything in T, in the reference's order of operations, so float results match torch's.
  Var<T> forward(const Tensor<uint8_t>& mask) const {
    DETR_CHECK(mask.defined() && mask.rank() == 3,
               "PositionEmbeddingSine: mask must be [B, H, W], got "
                   << (mask.defined() ? mask.shape().str() : std::string("undefined")));
    const int64_t B = mask.dim(0), H = mask.dim(1), W = mask.dim(2), HW = H * W;
    DETR_CHECK(H > 0 && W > 0, "PositionEmbeddingSine: mask " << mask.shape() << " has an empty plane");
    constexpr int N = NumPosFeats;
    // dim_t = temperature ** (2 * (arange(N) // 2) / N), computed in T as torch does in float32.
    T dim_t[N];
    for (int k = 0; k < N; ++k) dim_t[k] = std::pow(temperature, T(2 * (k / 2)) / T(N));
    // y_embed / x_embed: cumulative counts of non-padding pixels down the rows / along the
    // columns, then normalised by the last row / column.
    std::vector<T> embed(size_t(2 * B * HW));  // [2, B, H, W]: y then x
    std::vector<T> last_row;                   // [W]
    T* ye = embed.data();
    T* xe = embed.data() + B * HW;
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* m = mask.data() + b * HW;
      T* yb = ye + b * HW;
      T* xb = xe + b * HW;
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const T valid = m[y * W + x] ? T(0) : T(1);
          yb[y * W + x] = (y > 0 ? yb[(y - 1) * W + x] : T(0)) + valid;
          xb[y * W + x] = (x > 0 ? xb[y * W + x - 1] : T(0)) + valid;
        }
      if constexpr (Norm != SineNorm::None) {
        constexpr T eps = T(1e-6);
        constexpr T offset = Norm == SineNorm::Deformable ? T(-0.5) : T(0);
        for (int64_t y = 0; y < H; ++y) {
          const T last = xb[y * W + W - 1] + eps;
          for (int64_t x = 0; x < W; ++x) xb[y * W + x] = (xb[y * W + x] + offset) / last * scale;
        }
        last_row.assign(yb + (H - 1) * W, yb + H * W);
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x)
            yb[y * W + x] = (yb[y * W + x] + offset) / (last_row[size_t(x)] + eps) * scale;
      }
    }
    auto out = Tensor<T>::empty({B, 2 * N, H, W});  // [B, 2N, H, W]
    T* o = out.data();
    parallel_for_if(B * 2 * N * HW > 32768, B * 2 * N, [&](int64_t bc0, int64_t bc1) {
      for (int64_t bc = bc0; bc < bc1; ++bc) {
        const int64_t b = bc / (2 * N);
        const int c = int(bc % (2 * N));
        const int k = c % N;
        const T* e = (c < N ? ye : xe) + b * HW;
        T* dst = o + bc * HW;
        const T d = dim_t[k];
        if (k % 2 == 0)
          for (int64_t i = 0; i < HW; ++i) dst[i] = std::sin(e[i] / d);
        else
          for (int64_t i = 0; i < HW; ++i) dst[i] = std::cos(e[i] / d);
      }
    });
    return Var<T>(out);
  }
};

/// DETR's PositionEmbeddingLearned: row_embed / col_embed = Embedding(50, NumPosFeats), uniform
/// U(0, 1) init; feature maps up to 50 x 50. The mask is only read for its shape.
/// \tparam NumPosFeats features per axis   \tparam T scalar type
template <int NumPosFeats, class T = float>
struct PositionEmbeddingLearned {
  static_assert(NumPosFeats > 0, "PositionEmbeddingLearned<NumPosFeats>: NumPosFeats must be positive");
  using Scalar = T;
  static constexpr int num_pos_feats = NumPosFeats, channels = 2 * NumPosFeats, max_size = 50;
  Embedding<max_size, NumPosFeats, T> row_embed;
  Embedding<max_size, NumPosFeats, T> col_embed;

  void init(Rng& rng) {
    row_embed.weight.mutable_value().copy_(rng.uniform_tensor<T>({max_size, NumPosFeats}, 0.0, 1.0));
    col_embed.weight.mutable_value().copy_(rng.uniform_tensor<T>({max_size, NumPosFeats}, 0.0, 1.0));
  }
  template <class V>
  void visit(V& v) {
    v.child("row_embed", row_embed);
    v.child("col_embed", col_embed);
  }

  // mask [B, H, W] -> [B, 2 NumPosFeats, H, W]: channels [0, N) are col_embed[x], [N, 2N)
  // row_embed[y] (x first, unlike the sine embedding, as the reference concatenates).
  Var<T> forward(const Tensor<uint8_t>& mask) const {
    DETR_CHECK(mask.defined() && mask.rank() == 3,
               "PositionEmbeddingLearned: mask must be [B, H, W], got "
                   << (mask.defined() ? mask.shape().str() : std::string("undefined")));
    const int64_t B = mask.dim(0), H = mask.dim(1), W = mask.dim(2);
    DETR_CHECK(H <= max_size && W <= max_size, "PositionEmbeddingLearned: feature map "
                                                   << H << " x " << W << " exceeds the " << max_size
                                                   << " x " << max_size << " embedding tables");
    constexpr int64_t N = NumPosFeats;
    auto x_emb = expand(unsqueeze(slice(col_embed.weight, 0, 0, W), 0), {H, W, N});  // [H, W, N]
    auto y_emb = expand(unsqueeze(slice(row_embed.weight, 0, 0, H), 1), {H, W, N});  // [H, W, N]
    auto pos = permute(concat({x_emb, y_emb}, -1), {2, 0, 1});                       // [2N, H, W]
    return expand(unsqueeze(pos, 0), {B, 2 * N, H, W});
  }
};

}  // namespace detr
