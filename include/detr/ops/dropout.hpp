#pragma once
// dropout: zero each element with probability p and scale the rest by 1 / (1 - p) in training;
// the identity in eval. One draw from the caller's Rng seeds a counter-based hash per element,
// so the mask is generated in parallel and the backward regenerates it instead of storing it.
#include <algorithm>

#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"

namespace detr {

template <class T>
Var<T> dropout(const Var<T>& x, double p, bool training, Rng& rng) {
  DETR_CHECK(p >= 0.0 && p < 1.0, "dropout: probability must be in [0, 1), got " << p);
  if (!training || p == 0.0) return x;
  const T scale = T(1.0 / (1.0 - p));
  const uint64_t seed = rng.next_u64();
  const uint64_t threshold = uint64_t(p * 18446744073709551616.0);  // p * 2^64
  // The mask is not stored: the backward regenerates it from the seed (same bits).
  auto apply = [seed, threshold, scale](const Tensor<T>& in) {
    auto out = Tensor<T>::empty(in.shape());
    const int64_t n = in.numel(), chunk = 1 << 14;
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
    for (int64_t i = 0; i < n; i += chunk)
      internal::dropout_apply(seed + uint64_t(i), threshold, scale, in.data() + i, out.data() + i,
                              std::min(chunk, n - i));
    return out;
  };
  return record("dropout", apply(x.value()), {x},
                [apply](const Tensor<T>& g, auto& in) { in.add(0, apply(g)); });
}

}  // namespace detr
