#pragma once
// dropout: zero each element with probability p and scale the rest by 1 / (1 - p) in training;
// the identity in eval. One draw from the caller's Rng seeds a counter-based hash per element,
// so a seed reproduces the mask and the mask is generated in parallel.
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
  auto mask = Tensor<T>::empty(x.shape());  // 0 or 1 / (1 - p)
  auto y = Tensor<T>::empty(x.shape());
  const T* px = x.value().data();
  T *pm = mask.data(), *py = y.data();
  const int64_t n = mask.numel();
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    pm[i] = internal::splitmix64(seed + uint64_t(i)) < threshold ? T(0) : scale;
    py[i] = px[i] * pm[i];
  }
  return record("dropout", y, {x}, [mask](const Tensor<T>& g, auto& in) {
    auto dx = Tensor<T>::empty(g.shape());
    const T *pg = g.data(), *pm = mask.data();
    T* pd = dx.data();
    const int64_t n = dx.numel();
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) pd[i] = pg[i] * pm[i];
    in.add(0, std::move(dx));
  });
}

}  // namespace detr
