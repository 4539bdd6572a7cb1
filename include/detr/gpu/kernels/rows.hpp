#pragma once
// Kernel bodies of the row-wise backend ops, one row per index: softmax and log_softmax over the
// last dim and layer_norm's forward and backward, with the CPU ops' conventions (a softmax row of
// all -inf is all zeros; weights below the smallest normal number are flushed to 0).
#include <cmath>
#include <cstdint>
#include <limits>

#include "detr/core/device.hpp"
#include "detr/gpu/kernels/launch.hpp"

namespace detr::gpu::kernels {

// y = softmax(x) for one row of n (y may be x).
template <class T>
DETR_HD void softmax_row(const T* xr, T* yr, int64_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T m = ninf;
  for (int64_t j = 0; j < n; ++j) m = xr[j] > m ? xr[j] : m;
  if (m == ninf) {
    for (int64_t j = 0; j < n; ++j) yr[j] = T(0);
    return;
  }
  const T tiny = std::numeric_limits<T>::min();
  T s = T(0);
  for (int64_t j = 0; j < n; ++j) {
    T e = std::exp(xr[j] - m);
    e = e < tiny ? T(0) : e;
    yr[j] = e;
    s += e;
  }
  const T inv = T(1) / s;
  for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
}

template <class T>
struct SoftmaxRowBody {
  const T* x;
  T* y;
  int64_t n;
  DETR_HD void operator()(int64_t r) const { softmax_row(x + r * n, y + r * n, n); }
};

// Attention scores to probabilities in place, row r = bh * Lq + i of P [B * H, Lq, Lk]: scaled,
// the additive mask added, -inf where blocked or where the key is padding, then softmax (the
// CPU op's order of operations). Masks are [Lq, Lk] or per head [B * H, Lq, Lk]; pad is [B, Lk].
template <class T>
struct AttentionSoftmaxRowBody {
  T* P;
  int64_t H, Lq, Lk;
  T scale;
  const uint8_t* blocked;
  bool blocked_per_head;
  const T* additive;
  bool additive_per_head;
  const uint8_t* pad;
  DETR_HD void operator()(int64_t r) const {
    const int64_t bh = r / Lq, i = r % Lq, b = bh / H;
    T* row = P + r * Lk;
    const uint8_t* bl = blocked ? blocked + (blocked_per_head ? bh * Lq * Lk : 0) + i * Lk : nullptr;
    const T* ad = additive ? additive + (additive_per_head ? bh * Lq * Lk : 0) + i * Lk : nullptr;
    const uint8_t* pd = pad ? pad + b * Lk : nullptr;
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < Lk; ++j) {
      T v = row[j] * scale;
      if (ad) v += ad[j];
      if ((bl && bl[j]) || (pd && pd[j])) v = ninf;
      row[j] = v;
    }
    softmax_row(row, row, Lk);
  }
};

// dx = y * (g - sum(g * y)) * scale
template <class T>
struct SoftmaxGradRowBody {
  const T *y, *g;
  T* dx;
  int64_t n;
  T scale;
  DETR_HD void operator()(int64_t r) const {
    const T *yr = y + r * n, *gr = g + r * n;
    T* dr = dx + r * n;
    T dot = T(0);
    for (int64_t j = 0; j < n; ++j) dot += gr[j] * yr[j];
    for (int64_t j = 0; j < n; ++j) dr[j] = yr[j] * (gr[j] - dot) * scale;
  }
};

template <class T>
struct LogSoftmaxRowBody {
  const T* x;
  T* y;
  int64_t n;
  DETR_HD void operator()(int64_t r) const {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < n; ++j) m = xr[j] > m ? xr[j] : m;
    T s = T(0);
    for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    const T lse = m + std::log(s);
    for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - lse;
  }
};

// dx = g - exp(y) * sum(g)
template <class T>
struct LogSoftmaxGradRowBody {
  const T *y, *g;
  T* dx;
  int64_t n;
  DETR_HD void operator()(int64_t r) const {
    const T *yr = y + r * n, *gr = g + r * n;
    T* dr = dx + r * n;
    T s = T(0);
    for (int64_t j = 0; j < n; ++j) s += gr[j];
    for (int64_t j = 0; j < n; ++j) dr[j] = gr[j] - std::exp(yr[j]) * s;
  }
};

// y = (x - mean) * rstd * w + b per row of D; mean and rstd kept for the backward.
template <class T>
struct LayerNormRowBody {
  const T *x, *w, *b;
  T *y, *mean, *rstd;
  int64_t D;
  T eps;
  DETR_HD void operator()(int64_t r) const {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    T m = T(0);
    for (int64_t j = 0; j < D; ++j) m += xr[j];
    m /= T(D);
    T var = T(0);
    for (int64_t j = 0; j < D; ++j) var += (xr[j] - m) * (xr[j] - m);
    const T rs = T(1) / std::sqrt(var / T(D) + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t j = 0; j < D; ++j) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
  }
};

template <class T>
struct LayerNormInputGradRowBody {
  const T *g, *x, *w, *mean, *rstd;
  T* dx;
  int64_t D;
  DETR_HD void operator()(int64_t r) const {
    const T *xr = x + r * D, *gr = g + r * D;
    T* dr = dx + r * D;
    const T m = mean[r], rs = rstd[r];
    T sum_dxh = T(0), sum_dxh_xh = T(0);
    for (int64_t j = 0; j < D; ++j) {
      const T xh = (xr[j] - m) * rs, dxh = gr[j] * w[j];
      sum_dxh += dxh;
      sum_dxh_xh += dxh * xh;
    }
    const T a = sum_dxh / T(D), c = sum_dxh_xh / T(D);
    for (int64_t j = 0; j < D; ++j) {
      const T xh = (xr[j] - m) * rs;
      dr[j] = rs * (gr[j] * w[j] - a - xh * c);
    }
  }
};

// dw[j] = sum_r g * xhat, db[j] = sum_r g: one column per index, rows in order.
template <class T>
struct LayerNormParamGradBody {
  const T *g, *x, *mean, *rstd;
  T *dw, *db;
  int64_t R, D;
  DETR_HD void operator()(int64_t j) const {
    T sw = T(0), sb = T(0);
    for (int64_t r = 0; r < R; ++r) {
      const T gv = g[r * D + j];
      sw += gv * ((x[r * D + j] - mean[r]) * rstd[r]);
      sb += gv;
    }
    dw[j] = sw;
    db[j] = sb;
  }
};

}  // namespace detr::gpu::kernels
