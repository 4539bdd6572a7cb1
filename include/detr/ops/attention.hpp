#pragma once
// Fused multi-head scaled dot-product attention: softmax(q k^T / sqrt(Dh) + mask) v per head,
// reading heads straight from the [B, L, H*Dh] projections (no permute copies), with attn_mask
// (boolean or additive) and key_padding_mask as torch.nn.MultiheadAttention takes them, and
// dropout on the attention weights. The backward is fused too: it recomputes the dropout mask
// from its seed instead of storing it and keeps only the softmax probabilities.
#include <limits>

#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"
#include "detr/ops/softmax.hpp"

namespace detr {

// torch's attn_mask: either `blocked` (bool, true = may not attend) or `additive` (added to the
// scores), each [Lq, Lk] or [B*H, Lq, Lk]. Both may be given; neither is the default.
template <class T>
struct AttentionMask {
  Tensor<uint8_t> blocked;  // [Lq, Lk] or [B*H, Lq, Lk]
  Tensor<T> additive;       // [Lq, Lk] or [B*H, Lq, Lk]
};

namespace internal {

template <class T>
using StridedMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                              Eigen::OuterStride<>>;
template <class T>
using MutStridedMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                                 Eigen::OuterStride<>>;
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class M>
const M* mask_slice(const Tensor<M>& m, int64_t bh, int64_t Lq, int64_t Lk, const char* what,
                    int64_t B, int64_t H) {
  if (!m.defined()) return nullptr;
  bool shared = m.shape() == Shape{Lq, Lk}, per_head = m.shape() == Shape{B * H, Lq, Lk};
  DETR_CHECK(shared || per_head, "attention: " << what << " must be [" << Lq << ", " << Lk << "] or ["
                                               << B * H << ", " << Lq << ", " << Lk << "], got "
                                               << m.shape());
  return m.data() + (per_head ? bh * Lq * Lk : 0);
}

}  // namespace internal

// q [B, Lq, H*Dh], k [B, Lk, H*Dh], v [B, Lk, H*Dh] -> [B, Lq, H*Dh]
// key_padding_mask [B, Lk]: 1 = padding, ignored as a key.
template <class T>
Var<T> multi_head_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v, int heads,
                            const AttentionMask<T>& attn_mask = {},
                            const Tensor<uint8_t>& key_padding_mask = {}, double dropout_p = 0.0,
                            bool training = false, Rng* rng = nullptr) {
  DETR_CHECK(q.rank() == 3 && k.rank() == 3 && v.rank() == 3,
             "attention: query, key, value must be [B, L, D]; got " << q.shape() << ", "
                                                                     << k.shape() << ", " << v.shape());
  const int64_t B = q.dim(0), Lq = q.dim(1), D = q.dim(2), Lk = k.dim(1);
  DETR_CHECK(k.dim(0) == B && v.dim(0) == B && k.dim(2) == D && v.dim(2) == D && v.dim(1) == Lk,
             "attention: query " << q.shape() << ", key " << k.shape() << " and value " << v.shape()
                                 << " must share batch and embed dims, key and value their length");
  DETR_CHECK(heads > 0 && D % heads == 0, "attention: embed dim " << D << " not divisible by " << heads << " heads");
  if (key_padding_mask.defined())
    DETR_CHECK(key_padding_mask.shape() == (Shape{B, Lk}),
               "attention: key_padding_mask must be [" << B << ", " << Lk << "], got " << key_padding_mask.shape());
  DETR_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "attention: dropout must be in [0, 1), got " << dropout_p);
  const bool drop = training && dropout_p > 0.0;
  DETR_CHECK(!drop || rng, "attention: dropout in training needs an Rng");
  const int64_t H = heads, Dh = D / H;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
  const uint64_t seed = drop ? rng->next_u64() : 0;
  const uint64_t threshold = uint64_t(dropout_p * 18446744073709551616.0);
  const T keep_scale = T(1.0 / (1.0 - dropout_p));
  // Dropout multiplier of probability element i of head bh (0 or 1 / (1 - p)).
  auto drop_factor = [=](int64_t bh, int64_t i) {
    return internal::splitmix64(seed + uint64_t(bh * Lq * Lk + i)) < threshold ? T(0) : keep_scale;
  };
  // Validate the masks once, before any parallel work.
  internal::mask_slice(attn_mask.blocked, 0, Lq, Lk, "attn_mask", B, H);
  internal::mask_slice(attn_mask.additive, 0, Lq, Lk, "attn_mask", B, H);

  const Tensor<T> qv = q.value(), kv = k.value(), vv = v.value();
  auto probs = Tensor<T>::empty({B, H, Lq, Lk});  // softmax output, before dropout
  auto out = Tensor<T>::empty({B, Lq, D});
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  // Threads only pay off above ~1 MFLOP; tiny problems stay on the calling thread.
  const bool parallel = B * H > 1 && B * Lq * Lk * D > (int64_t(1) << 18);
#pragma omp parallel if (parallel)
  {
    internal::RowMat<T> dropped;  // this thread's P * dropout mask
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      internal::StridedMap<T> Q(qv.data() + b * Lq * D + h * Dh, Lq, Dh, Eigen::OuterStride<>(D));
      internal::StridedMap<T> K(kv.data() + b * Lk * D + h * Dh, Lk, Dh, Eigen::OuterStride<>(D));
      internal::StridedMap<T> V(vv.data() + b * Lk * D + h * Dh, Lk, Dh, Eigen::OuterStride<>(D));
      internal::MutStridedMap<T> O(out.data() + b * Lq * D + h * Dh, Lq, Dh, Eigen::OuterStride<>(D));
      T* P = probs.data() + bh * Lq * Lk;
      Eigen::Map<internal::RowMat<T>> S(P, Lq, Lk);
      S.noalias() = (Q * K.transpose()) * scale;
      const uint8_t* blocked = internal::mask_slice(attn_mask.blocked, bh, Lq, Lk, "attn_mask", B, H);
      const T* additive = internal::mask_slice(attn_mask.additive, bh, Lq, Lk, "attn_mask", B, H);
      const uint8_t* pad = key_padding_mask.defined() ? key_padding_mask.data() + b * Lk : nullptr;
      for (int64_t i = 0; i < Lq; ++i) {
        T* row = P + i * Lk;
        if (additive)
          for (int64_t j = 0; j < Lk; ++j) row[j] += additive[i * Lk + j];
        if (blocked)
          for (int64_t j = 0; j < Lk; ++j)
            if (blocked[i * Lk + j]) row[j] = ninf;
        if (pad)
          for (int64_t j = 0; j < Lk; ++j)
            if (pad[j]) row[j] = ninf;
        internal::softmax_row(row, Lk);
      }
      if (drop) {
        dropped.resize(Lq, Lk);
        for (int64_t i = 0; i < Lq * Lk; ++i) dropped.data()[i] = P[i] * drop_factor(bh, i);
        O.noalias() = dropped * V;
      } else {
        O.noalias() = S * V;
      }
    }
  }
  return record("multi_head_attention", out, {q, k, v},
                [qv, kv, vv, probs, B, H, Lq, Lk, D, Dh, scale, drop, drop_factor, parallel](const Tensor<T>& g, auto& in) {
    auto dq = Tensor<T>::empty(qv.shape()), dk = Tensor<T>::empty(kv.shape()), dv = Tensor<T>::empty(vv.shape());
#pragma omp parallel if (parallel)
    {
      internal::RowMat<T> dP, Pd;
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < B * H; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        const Eigen::OuterStride<> st(D);
        internal::StridedMap<T> Q(qv.data() + b * Lq * D + h * Dh, Lq, Dh, st);
        internal::StridedMap<T> K(kv.data() + b * Lk * D + h * Dh, Lk, Dh, st);
        internal::StridedMap<T> V(vv.data() + b * Lk * D + h * Dh, Lk, Dh, st);
        internal::StridedMap<T> dO(g.data() + b * Lq * D + h * Dh, Lq, Dh, st);
        internal::MutStridedMap<T> dQ(dq.data() + b * Lq * D + h * Dh, Lq, Dh, st);
        internal::MutStridedMap<T> dK(dk.data() + b * Lk * D + h * Dh, Lk, Dh, st);
        internal::MutStridedMap<T> dV(dv.data() + b * Lk * D + h * Dh, Lk, Dh, st);
        Eigen::Map<const internal::RowMat<T>> P(probs.data() + bh * Lq * Lk, Lq, Lk);
        dP.noalias() = dO * V.transpose();  // gradient w.r.t. the dropped probabilities
        if (drop) {
          Pd.resize(Lq, Lk);
          for (int64_t i = 0; i < Lq * Lk; ++i) {
            T f = drop_factor(bh, i);
            Pd.data()[i] = P.data()[i] * f;
            dP.data()[i] *= f;
          }
          dV.noalias() = Pd.transpose() * dO;
        } else {
          dV.noalias() = P.transpose() * dO;
        }
        for (int64_t i = 0; i < Lq; ++i)  // softmax backward in place: dS = P * (dP - <dP, P>)
          internal::softmax_row_backward(P.data() + i * Lk, dP.data() + i * Lk, dP.data() + i * Lk, Lk);
        dQ.noalias() = (dP * K) * scale;
        dK.noalias() = (dP.transpose() * Q) * scale;
      }
    }
    in.add(0, std::move(dq));
    in.add(1, std::move(dk));
    in.add(2, std::move(dv));
  });
}

}  // namespace detr
