#pragma once
// dropout: zero each element with probability p and scale the rest by 1 / (1 - p) in training;
// the identity in eval. One draw from the caller's Rng seeds a counter-based hash per element,
// so the mask is generated in parallel; it is kept as bits for the backward.
#include <algorithm>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"

namespace detr {

template <class T, class D>
Var<T, D> dropout(const Var<T, D>& x, double p, bool training, Rng& rng) {
  DETR_CHECK(p >= 0.0 && p < 1.0, "dropout: probability must be in [0, 1), got " << p);
  if (!training || p == 0.0) return x;
  const T scale = T(1.0 / (1.0 - p));
  const uint64_t seed = rng.next_u64();
  if constexpr (is_cuda<D>) {
    // The same mask as the CPU's, recomputed from the seed in the backward instead of stored.
    const internal::DropoutMask<T> mask{seed, internal::dropout_threshold(p), scale, true};
    auto y = Tensor<T, D>::empty(x.shape());
    gpu::dropout(x.value().data(), y.data(), y.numel(), mask);
    return record("dropout", y, {x}, [mask](const Tensor<T, D>& g, auto& in) {
      auto dx = Tensor<T, D>::empty(g.shape());
      gpu::dropout(g.data(), dx.data(), g.numel(), mask);
      in.add(0, std::move(dx));
    });
  } else {
    // The mask is hashed once and kept as bits (1/32 of a float tensor) for the backward.
    const int64_t n = x.numel(), chunk = 1 << 14;
    auto bits = Tensor<uint16_t>::empty({(n + 15) / 16});
    auto y = Tensor<T>::empty(x.shape());
    internal::dropout_apply(seed, p, x.value().data(), y.data(), n, bits.data());
    return record("dropout", y, {x}, [bits, scale, chunk](const Tensor<T>& g, auto& in) {
      auto dx = Tensor<T>::empty(g.shape());
      const int64_t n = g.numel();
      parallel_for((n + chunk - 1) / chunk, 4, [&](int64_t c0, int64_t c1) {
        for (int64_t i = c0 * chunk; i < std::min(n, c1 * chunk); i += chunk)
          internal::apply_keep_bits(bits.data() + i / 16, scale, g.data() + i, dx.data() + i, std::min(chunk, n - i));
      });
      in.add(0, std::move(dx));
    });
  }
}

}  // namespace detr
