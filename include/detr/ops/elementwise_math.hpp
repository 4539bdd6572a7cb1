#pragma once
// The per-element math of the element-wise ops, as DETR_HD functors shared by the CPU loops
// (ops/elementwise.hpp) and the CUDA kernels (src/cuda/elementwise.cu), so that CPU tests check
// the code the GPU runs. A unary functor gives y = f(x) and grad(x, y) = dy/dx; a binary one
// gives f(a, b).
#include <algorithm>
#include <cmath>

#include "detr/core/device.hpp"

namespace detr::math {

struct Relu {
  // NaN stays NaN (as in torch): a diverging activation must not turn into a confident 0.
  template <class T>
  DETR_HD T operator()(T v) const { return v < T(0) ? T(0) : v; }
  template <class T>
  DETR_HD T grad(T v, T) const { return v > T(0) ? T(1) : T(0); }
};

// Exact (erf) GELU, torch.nn.functional.gelu's default.
struct Gelu {
  template <class T>
  DETR_HD T operator()(T v) const { return T(0.5) * v * (T(1) + std::erf(v * T(0.70710678118654752440))); }
  template <class T>
  DETR_HD T grad(T v, T) const {
    T cdf = T(0.5) * (T(1) + std::erf(v * T(0.70710678118654752440)));
    T pdf = std::exp(T(-0.5) * v * v) * T(0.3989422804014327);  // 1/sqrt(2 pi)
    return cdf + v * pdf;
  }
};

struct Sigmoid {
  template <class T>
  DETR_HD T operator()(T v) const { return T(1) / (T(1) + std::exp(-v)); }
  template <class T>
  DETR_HD T grad(T, T y) const { return y * (T(1) - y); }
};

struct Tanh {
  template <class T>
  DETR_HD T operator()(T v) const { return std::tanh(v); }
  template <class T>
  DETR_HD T grad(T, T y) const { return T(1) - y * y; }
};

struct Exp {
  template <class T>
  DETR_HD T operator()(T v) const { return std::exp(v); }
  template <class T>
  DETR_HD T grad(T, T y) const { return y; }
};

struct Log {
  template <class T>
  DETR_HD T operator()(T v) const { return std::log(v); }
  template <class T>
  DETR_HD T grad(T v, T) const { return T(1) / v; }
};

struct Sqrt {
  template <class T>
  DETR_HD T operator()(T v) const { return std::sqrt(v); }
  template <class T>
  DETR_HD T grad(T, T y) const { return T(0.5) / y; }
};

struct Square {
  template <class T>
  DETR_HD T operator()(T v) const { return v * v; }
  template <class T>
  DETR_HD T grad(T v, T) const { return T(2) * v; }
};

// |x|, with gradient sign(x) (0 at 0, as torch).
struct Abs {
  template <class T>
  DETR_HD T operator()(T v) const { return std::abs(v); }
  template <class T>
  DETR_HD T grad(T v, T) const { return T((v > 0) - (v < 0)); }
};

template <class T>
struct AddScalar {
  T s;
  DETR_HD T operator()(T v) const { return v + s; }
  DETR_HD T grad(T, T) const { return T(1); }
};

template <class T>
struct MulScalar {
  T s;
  DETR_HD T operator()(T v) const { return v * s; }
  DETR_HD T grad(T, T) const { return s; }
};

// v / s, divided as torch divides (mean's 1 / count would round differently).
template <class T>
struct DivideBy {
  T s;
  DETR_HD T operator()(T v) const { return v / s; }
  DETR_HD T grad(T, T) const { return T(1) / s; }
};

// Clamp to [lo, hi]; gradient 1 where lo <= x <= hi (torch's clamp backward).
template <class T>
struct Clamp {
  T lo, hi;
  DETR_HD T operator()(T v) const { return std::min(std::max(v, lo), hi); }
  DETR_HD T grad(T v, T) const { return (v >= lo && v <= hi) ? T(1) : T(0); }
};

// log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps, exactly as the
// Deformable DETR reference `inverse_sigmoid(x, eps=1e-5)`, including its gradient.
template <class T>
struct InverseSigmoid {
  T eps;
  DETR_HD T operator()(T v) const {
    v = std::min(std::max(v, T(0)), T(1));
    return std::log(std::max(v, eps) / std::max(T(1) - v, eps));
  }
  DETR_HD T grad(T v, T) const {
    if (v < T(0) || v > T(1)) return T(0);
    T d = T(0);
    if (v >= eps) d += T(1) / v;
    if (T(1) - v >= eps) d += T(1) / (T(1) - v);
    return d;
  }
};

// Binary functors of the broadcasting ops and their backward.
struct Plus {
  template <class T>
  DETR_HD T operator()(T a, T b) const { return a + b; }
};
struct Minus {
  template <class T>
  DETR_HD T operator()(T a, T b) const { return a - b; }
};
struct Times {
  template <class T>
  DETR_HD T operator()(T a, T b) const { return a * b; }
};
struct Divide {
  template <class T>
  DETR_HD T operator()(T a, T b) const { return a / b; }
};
// -a / b: with a = a / b, the factor d(a / b)/db.
struct NegDivide {
  template <class T>
  DETR_HD T operator()(T a, T b) const { return -a / b; }
};
// -a (b unread): the gradient of sub's second operand.
struct NegateFirst {
  template <class T>
  DETR_HD T operator()(T a, T) const { return -a; }
};
// a / s (b unread): the backward of mean, divided as torch does rather than multiplied by 1 / s.
template <class T>
struct DivideFirstBy {
  T s;
  DETR_HD T operator()(T a, T) const { return a / s; }
};

}  // namespace detr::math
