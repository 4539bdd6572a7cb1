#pragma once
// Fused multi-head scaled dot-product attention: softmax(q k^T / sqrt(Dh) + mask) v per head,
// reading heads straight from the [B, L, H*Dh] projections (no permute copies), with attn_mask
// (boolean or additive) and key_padding_mask as torch.nn.MultiheadAttention takes them, and
// dropout on the attention weights. The backward is fused too: it keeps only the softmax
// probabilities and the forward's dropout mask as bits.
#include <algorithm>
#include <limits>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"
#include "detr/ops/gemm.hpp"
#include "detr/gpu/blas.hpp"
#include "detr/gpu/rows.hpp"
#include "detr/ops/softmax.hpp"

namespace detr {

// torch's attn_mask: either `blocked` (bool, true = may not attend) or `additive` (added to the
// scores), each [Lq, Lk] or [B*H, Lq, Lk]. Both may be given; neither is the default.
template <class T, class D = cpu>
struct AttentionMask {
  Tensor<uint8_t, D> blocked;  // [Lq, Lk] or [B*H, Lq, Lk]
  Tensor<T, D> additive;       // [Lq, Lk] or [B*H, Lq, Lk]
};

namespace internal {

// Query rows per block: a block's scores (kAttentionBlock x Lk) stay in L2 between the products.
inline constexpr int64_t kAttentionBlock = 48;

// Whether a mask of shape s is per head ([B*H, Lq, Lk]) rather than shared ([Lq, Lk]).
inline bool mask_per_head(const Shape& s, int64_t Lq, int64_t Lk, const char* what, int64_t B, int64_t H) {
  bool shared = s == Shape{Lq, Lk}, per_head = s == Shape{B * H, Lq, Lk};
  DETR_CHECK(shared || per_head, "attention: " << what << " must be [" << Lq << ", " << Lk << "] or ["
                                               << B * H << ", " << Lq << ", " << Lk << "], got " << s);
  return per_head;
}

template <class M>
const M* mask_slice(const Tensor<M>& m, int64_t bh, int64_t Lq, int64_t Lk, const char* what,
                    int64_t B, int64_t H) {
  if (!m.defined()) return nullptr;
  return m.data() + (mask_per_head(m.shape(), Lq, Lk, what, B, H) ? bh * Lq * Lk : 0);
}

// The CUDA attention: per batch entry, cuBLAS products over the heads read in place (row stride
// D), the masked softmax as one row kernel, dropout from the CPU's mask (recomputed from the seed
// in the backward). Keeps the probabilities [B, H, Lq, Lk] for the backward.
template <class T>
Var<T, cuda> multi_head_attention_cuda(const Var<T, cuda>& q, const Var<T, cuda>& k, const Var<T, cuda>& v,
                                       int64_t H, const AttentionMask<T, cuda>& attn_mask,
                                       const Tensor<uint8_t, cuda>& key_padding_mask, bool drop, uint64_t seed,
                                       double dropout_p) {
  using DT = Tensor<T, cuda>;
  const int64_t B = q.dim(0), Lq = q.dim(1), D = q.dim(2), Lk = k.dim(1), Dh = D / H;
  const T scale = T(1.0 / std::sqrt(double(Dh)));
  const bool blocked_per_head =
      attn_mask.blocked.defined() && mask_per_head(attn_mask.blocked.shape(), Lq, Lk, "attn_mask", B, H);
  const bool additive_per_head =
      attn_mask.additive.defined() && mask_per_head(attn_mask.additive.shape(), Lq, Lk, "attn_mask", B, H);
  const DropoutMask<T> mask{seed, dropout_threshold(dropout_p), T(1.0 / (1.0 - dropout_p)), drop};
  const DT qv = q.value(), kv = k.value(), vv = v.value();
  auto probs = DT::empty({B, H, Lq, Lk});
  auto out = DT::empty({B, Lq, D});
  const int64_t LL = Lq * Lk;
  for (int64_t b = 0; b < B; ++b)  // S = Q K^T for the H heads of entry b
    gpu::gemm_ld(false, true, Lq, Lk, Dh, qv.data() + b * Lq * D, D, Dh, kv.data() + b * Lk * D, D, Dh,
                 probs.data() + b * H * LL, Lk, LL, H);
  gpu::attention_softmax(probs.data(), B, H, Lq, Lk, scale, attn_mask.blocked.defined() ? attn_mask.blocked.data() : nullptr,
                         blocked_per_head, attn_mask.additive.defined() ? attn_mask.additive.data() : nullptr,
                         additive_per_head, key_padding_mask.defined() ? key_padding_mask.data() : nullptr);
  DT dropped = probs;
  if (drop) {
    dropped = DT::empty(probs.shape());
    gpu::dropout(probs.data(), dropped.data(), probs.numel(), mask);
  }
  for (int64_t b = 0; b < B; ++b)  // O = P V
    gpu::gemm_ld(false, false, Lq, Dh, Lk, dropped.data() + b * H * LL, Lk, LL, vv.data() + b * Lk * D, D, Dh,
                 out.data() + b * Lq * D, D, Dh, H);
  if (drop) dropped = DT();  // recomputed in the backward rather than kept
  return record("multi_head_attention", out, {q, k, v},
                [qv, kv, vv, probs, B, H, Lq, Lk, D, Dh, LL, scale, mask](const DT& g, auto& in) {
    auto dq = DT::empty(qv.shape()), dk = DT::empty(kv.shape()), dv = DT::empty(vv.shape());
    auto dP = DT::empty(probs.shape());
    DT PV = probs;
    if (mask.active) {
      PV = DT::empty(probs.shape());
      gpu::dropout(probs.data(), PV.data(), probs.numel(), mask);
    }
    for (int64_t b = 0; b < B; ++b) {
      const T *dO = g.data() + b * Lq * D, *Vb = vv.data() + b * Lk * D;
      T* dPb = dP.data() + b * H * LL;
      gpu::gemm_ld(false, true, Lq, Lk, Dh, dO, D, Dh, Vb, D, Dh, dPb, Lk, LL, H);  // dP = dO V^T
      gpu::gemm_ld(true, false, Lk, Dh, Lq, PV.data() + b * H * LL, Lk, LL, dO, D, Dh, dv.data() + b * Lk * D, D,
                   Dh, H);  // dV = P^T dO
    }
    if (mask.active) gpu::dropout(dP.data(), dP.data(), dP.numel(), mask);
    gpu::softmax_backward(probs.data(), dP.data(), dP.data(), B * H * Lq, Lk, scale);  // dS, in place
    for (int64_t b = 0; b < B; ++b) {
      const T *dS = dP.data() + b * H * LL, *Kb = kv.data() + b * Lk * D, *Qb = qv.data() + b * Lq * D;
      gpu::gemm_ld(false, false, Lq, Dh, Lk, dS, Lk, LL, Kb, D, Dh, dq.data() + b * Lq * D, D, Dh, H);  // dQ = dS K
      gpu::gemm_ld(true, false, Lk, Dh, Lq, dS, Lk, LL, Qb, D, Dh, dk.data() + b * Lk * D, D, Dh, H);  // dK = dS^T Q
    }
    in.add(0, std::move(dq));
    in.add(1, std::move(dk));
    in.add(2, std::move(dv));
  });
}

}  // namespace internal

// q [B, Lq, H*Dh], k [B, Lk, H*Dh], v [B, Lk, H*Dh] -> [B, Lq, H*Dh]
// key_padding_mask [B, Lk]: 1 = padding, ignored as a key.
template <class T, class Dev>
Var<T, Dev> multi_head_attention(const Var<T, Dev>& q, const Var<T, Dev>& k, const Var<T, Dev>& v, int heads,
                                 const AttentionMask<T, Dev>& attn_mask = {},
                                 const Tensor<uint8_t, Dev>& key_padding_mask = {}, double dropout_p = 0.0,
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
  if constexpr (is_cuda<Dev>) {
    return internal::multi_head_attention_cuda(q, k, v, H, attn_mask, key_padding_mask, drop, seed, dropout_p);
  } else {
    const uint64_t threshold = internal::dropout_threshold(dropout_p);
    const T keep_scale = T(1.0 / (1.0 - dropout_p));
    // The dropout mask is hashed once, in the forward, and kept as bits (1/32 of the probabilities'
    // memory) for the backward: words_per_block 16-bit words per block of query rows.
    const int64_t blocks = (Lq + internal::kAttentionBlock - 1) / internal::kAttentionBlock;
    const int64_t words_per_block = (internal::kAttentionBlock * Lk + 15) / 16;
    auto keep_bits = Tensor<uint16_t>::empty({drop ? B * H * blocks * words_per_block : 0});
    uint16_t* const bits_data = keep_bits.data();
    auto block_bits = [bits_data, blocks, words_per_block](int64_t bh, int64_t i0) {
      return bits_data + (bh * blocks + i0 / internal::kAttentionBlock) * words_per_block;
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
    // Each head runs in blocks of kAttentionBlock query rows, so that a block's scores, probabilities and
    // their gradients stay in L2 between the products; K^T and V are packed once per head.
    parallel_for_if(parallel, B * H, [&](int64_t bh0, int64_t bh1) {
      thread_local internal::PackedB<T> kt_packed, v_packed;  // grow-only buffers, kept per thread
      struct Forward;
      T* dropped = drop ? internal::thread_scratch<Forward, 0, T>(size_t(std::min(internal::kAttentionBlock, Lq) * Lk))
                        : nullptr;  // this thread's P * dropout mask, one block
      T* key_bias = key_padding_mask.defined() ? internal::thread_scratch<Forward, 1, T>(size_t(Lk)) : nullptr;
      for (int64_t bh = bh0; bh < bh1; ++bh) {
        const int64_t b = bh / H, h = bh % H, qo = b * Lq * D + h * Dh, ko = b * Lk * D + h * Dh;
        kt_packed.pack(true, kv.data() + ko, D, Dh, Lk);
        v_packed.pack(false, vv.data() + ko, D, Lk, Dh);
        const uint8_t* blocked = internal::mask_slice(attn_mask.blocked, bh, Lq, Lk, "attn_mask", B, H);
        const T* additive = internal::mask_slice(attn_mask.additive, bh, Lq, Lk, "attn_mask", B, H);
        const uint8_t* pad = key_padding_mask.defined() ? key_padding_mask.data() + b * Lk : nullptr;
        if (pad)
          for (int64_t j = 0; j < Lk; ++j) key_bias[j] = pad[j] ? ninf : T(0);
        for (int64_t i0 = 0; i0 < Lq; i0 += internal::kAttentionBlock) {
          const int64_t rows = std::min(internal::kAttentionBlock, Lq - i0);
          T* P = probs.data() + (bh * Lq + i0) * Lk;
          kt_packed.multiply(false, rows, qv.data() + qo + i0 * D, D, P, Lk);  // S = Q K^T
          for (int64_t i = 0; i < rows; ++i) {
            T* row = P + i * Lk;
            if (!additive && !blocked) {  // the common case in one pass: scale, padding as -inf
              if (pad)
                for (int64_t j = 0; j < Lk; ++j) row[j] = row[j] * scale + key_bias[j];
              else
                for (int64_t j = 0; j < Lk; ++j) row[j] *= scale;
              internal::softmax_row(row, Lk);
              continue;
            }
            for (int64_t j = 0; j < Lk; ++j) row[j] *= scale;
            if (additive)
              for (int64_t j = 0; j < Lk; ++j) row[j] += additive[(i0 + i) * Lk + j];
            if (blocked)
              for (int64_t j = 0; j < Lk; ++j)
                if (blocked[(i0 + i) * Lk + j]) row[j] = ninf;
            if (pad)
              for (int64_t j = 0; j < Lk; ++j)
                if (pad[j]) row[j] = ninf;
            internal::softmax_row(row, Lk);
          }
          const T* PV = P;
          if (drop) {
            uint16_t* bits = block_bits(bh, i0);
            internal::dropout_keep_bits(seed + uint64_t((bh * Lq + i0) * Lk), threshold, rows * Lk, bits);
            internal::apply_keep_bits(bits, keep_scale, P, dropped, rows * Lk);
            PV = dropped;
          }
          v_packed.multiply(false, rows, PV, Lk, out.data() + qo + i0 * D, D);  // O = P V
        }
      }
    });
    return record("multi_head_attention", out, {q, k, v},
                  [qv, kv, vv, probs, B, H, Lq, Lk, D, Dh, scale, drop, keep_bits, block_bits, keep_scale, parallel](const Tensor<T>& g, auto& in) {
      auto dq = Tensor<T>::empty(qv.shape()), dk = Tensor<T>::empty(kv.shape()), dv = Tensor<T>::empty(vv.shape());
      parallel_for_if(parallel, B * H, [&](int64_t bh0, int64_t bh1) {
        thread_local internal::PackedB<T> vt_packed, k_packed;
        struct Backward;
        const size_t block = size_t(std::min(internal::kAttentionBlock, Lq) * Lk);
        T* dP = internal::thread_scratch<Backward, 0, T>(block);
        T* Pd = drop ? internal::thread_scratch<Backward, 1, T>(block) : nullptr;
        for (int64_t bh = bh0; bh < bh1; ++bh) {
          const int64_t b = bh / H, h = bh % H, qo = b * Lq * D + h * Dh, ko = b * Lk * D + h * Dh;
          vt_packed.pack(true, vv.data() + ko, D, Dh, Lk);
          k_packed.pack(false, kv.data() + ko, D, Lk, Dh);
          for (int64_t i0 = 0; i0 < Lq; i0 += internal::kAttentionBlock) {
            const int64_t rows = std::min(internal::kAttentionBlock, Lq - i0);
            const T* P = probs.data() + (bh * Lq + i0) * Lk;
            const T* dO = g.data() + qo + i0 * D;
            const T beta = i0 == 0 ? T(0) : T(1);  // dK and dV sum over the query blocks
            vt_packed.multiply(false, rows, dO, D, dP, Lk);  // dP = dO V^T (w.r.t. the dropped P)
            const T* PV = P;
            if (drop) {
              const uint16_t* bits = block_bits(bh, i0);
              internal::apply_keep_bits(bits, keep_scale, P, Pd, rows * Lk);
              internal::apply_keep_bits(bits, keep_scale, dP, dP, rows * Lk);
              PV = Pd;
            }
            // The softmax backward first: its row-order pass over P brings the block into cache for
            // the column-order reads of dV's product (which otherwise miss on every row).
            for (int64_t i = 0; i < rows; ++i) {  // softmax backward in place: dS = P * (dP - <dP, P>)
              internal::softmax_row_backward(P + i * Lk, dP + i * Lk, dP + i * Lk, Lk, scale);
            }
            internal::gemm(true, false, Lk, Dh, rows, PV, Lk, dO, D, dv.data() + ko, D, beta);  // dV += P^T dO
            k_packed.multiply(false, rows, dP, Lk, dq.data() + qo + i0 * D, D);  // dQ = dS K
            internal::gemm(true, false, Lk, Dh, rows, dP, Lk, qv.data() + qo + i0 * D, D, dk.data() + ko, D, beta);  // dK += dS^T Q
          }
        }
      });
      in.add(0, std::move(dq));
      in.add(1, std::move(dk));
      in.add(2, std::move(dv));
    });
  }
}

}  // namespace detr
