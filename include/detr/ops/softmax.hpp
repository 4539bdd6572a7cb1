#pragma once
// softmax and log_softmax over the last dimension, one fused pass per row each way.
#include <cmath>
#include <limits>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/gpu/rows.hpp"

namespace detr {

namespace internal {
// In-place softmax of one row (max-subtracted). A row of all -inf becomes all zeros rather
// than NaN: a fully masked attention row contributes nothing.
template <class T>
inline void softmax_row(T* row, int64_t n) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  Eigen::Map<Arr> r(row, n);
  const T m = n ? r.maxCoeff() : ninf;
  if (m == ninf) {
    r.setZero();
    return;
  }
  // Eigen's vectorised exp (a select() around it would fall back to scalar expf). Its exp(-inf)
  // is ~1e-39 rather than 0, so results below the smallest normal number, which are masked
  // entries or weights too small to matter next to the row maximum's 1, are flushed to exactly 0.
  r = (r - m).exp();
  const T tiny = std::numeric_limits<T>::min();
  for (int64_t j = 0; j < n; ++j) row[j] = row[j] < tiny ? T(0) : row[j];
  r *= T(1) / r.sum();
}

// dx = y * (g - sum(g * y)) * scale for one row (scale: attention's 1 / sqrt(Dh), fused).
// The dot product is a SIMD reduction (lanes summed in a fixed order, so the same bits every run):
// summed strictly left to right it ran one scalar add per element, ~40% of attention's backward loop.
template <class T>
inline void softmax_row_backward(const T* y, const T* g, T* dx, int64_t n, T scale = T(1)) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += g[j] * y[j];
  for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (g[j] - dot) * scale;  // * 1 is exact
}
}  // namespace internal

// x [..., N] -> softmax over N
template <class T, class D>
Var<T, D> softmax(const Var<T, D>& x) {
  DETR_CHECK(x.rank() >= 1, "softmax: needs rank >= 1, got " << x.shape());
  const int64_t n = x.dim(-1), rows = n ? x.numel() / n : 0;
  Tensor<T, D> y;
  if constexpr (is_cuda<D>) {
    y = Tensor<T, D>::empty(x.shape());
    gpu::softmax_forward(x.value().data(), y.data(), rows, n);
  } else {
    y = x.value().clone();
    T* py = y.data();
    parallel_for_if(y.numel() > (1 << 15), rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) internal::softmax_row(py + r * n, n);
    });
  }
  return record("softmax", y, {x}, [y, n, rows](const Tensor<T, D>& g, auto& in) {
    auto dx = Tensor<T, D>::empty(g.shape());
    if constexpr (is_cuda<D>) {
      gpu::softmax_backward(y.data(), g.data(), dx.data(), rows, n, T(1));
    } else {
      parallel_for_if(g.numel() > (1 << 15), rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          internal::softmax_row_backward(y.data() + r * n, g.data() + r * n, dx.data() + r * n, n);
      });
    }
    in.add(0, std::move(dx));
  });
}

// x [..., N] -> log_softmax over N (x - logsumexp(x))
template <class T, class D>
Var<T, D> log_softmax(const Var<T, D>& x) {
  DETR_CHECK(x.rank() >= 1, "log_softmax: needs rank >= 1, got " << x.shape());
  const int64_t n = x.dim(-1), rows = n ? x.numel() / n : 0;
  Tensor<T, D> y;
  if constexpr (is_cuda<D>) {
    y = Tensor<T, D>::empty(x.shape());
    gpu::log_softmax_forward(x.value().data(), y.data(), rows, n);
  } else {
    y = x.value().clone();
    T* py = y.data();
    parallel_for_if(y.numel() > (1 << 15), rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* row = py + r * n;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < n; ++j) m = std::max(m, row[j]);
        T s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::exp(row[j] - m);
        T lse = m + std::log(s);
        for (int64_t j = 0; j < n; ++j) row[j] -= lse;
      }
    });
  }
  return record("log_softmax", y, {x}, [y, n, rows](const Tensor<T, D>& g, auto& in) {
    auto dx = Tensor<T, D>::empty(g.shape());
    if constexpr (is_cuda<D>) {
      gpu::log_softmax_backward(y.data(), g.data(), dx.data(), rows, n);
    } else {
      parallel_for_if(g.numel() > (1 << 15), rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T *yr = y.data() + r * n, *gr = g.data() + r * n;
          T* dr = dx.data() + r * n;
          T s = 0;
          for (int64_t j = 0; j < n; ++j) s += gr[j];
          for (int64_t j = 0; j < n; ++j) dr[j] = gr[j] - std::exp(yr[j]) * s;
        }
      });
    }
    in.add(0, std::move(dx));
  });
}

}  // namespace detr
