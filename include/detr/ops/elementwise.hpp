#pragma once
// Element-wise ops with broadcasting (add, sub, mul, div), scalar ops, and activations, each
// with its backward beside it. Broadcast inputs get their gradient summed back to their shape.
#include <cmath>
#include <concepts>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/broadcast.hpp"

namespace detr {

namespace internal {

// y = fwd(x); dy/dx = dfdx(x, y) (element-wise, fused into one pass each way).
template <class T, class Fwd, class Dfdx>
Var<T> unary(const char* op, const Var<T>& x, Fwd fwd, Dfdx dfdx) {
  const Tensor<T> xv = x.value();
  auto y = Tensor<T>::empty(xv.shape());
  const T* px = xv.data();
  T* py = y.data();
  int64_t n = xv.numel();
  parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { py[i] = fwd(px[i]); });
  return record(op, y, {x}, [xv, y, dfdx](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::empty(g.shape());
    const T *pg = g.data(), *px = xv.data(), *py = y.data();
    T* po = gx.data();
    int64_t n = g.numel();
    parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { po[i] = pg[i] * dfdx(px[i], py[i]); });
    in.add(0, std::move(gx));
  });
}

}  // namespace internal

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
  auto out = internal::broadcast_binary(a.value(), b.value(), "add", [](T x, T y) { return x + y; });
  return record("add", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(g, sa));
    if (in.wants(1)) in.add(1, internal::sum_to(g, sb));
  });
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
  auto out = internal::broadcast_binary(a.value(), b.value(), "sub", [](T x, T y) { return x - y; });
  return record("sub", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor<T>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(g, sa));
    if (in.wants(1)) {
      auto n = internal::sum_to(g, sb);
      in.add(1, internal::broadcast_binary(n, n, "sub", [](T x, T) { return -x; }));
    }
  });
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
  const Tensor<T> av = a.value(), bv = b.value();
  auto out = internal::broadcast_binary(av, bv, "mul", [](T x, T y) { return x * y; });
  return record("mul", out, {a, b}, [av, bv](const Tensor<T>& g, auto& in) {
    auto times = [](T x, T y) { return x * y; };
    if (in.wants(0)) in.add(0, internal::sum_to(internal::broadcast_binary(g, bv, "mul", times), av.shape()));
    if (in.wants(1)) in.add(1, internal::sum_to(internal::broadcast_binary(g, av, "mul", times), bv.shape()));
  });
}

template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
  const Tensor<T> av = a.value(), bv = b.value();
  auto out = internal::broadcast_binary(av, bv, "div", [](T x, T y) { return x / y; });
  return record("div", out, {a, b}, [av, bv, out](const Tensor<T>& g, auto& in) {
    if (in.wants(0))
      in.add(0, internal::sum_to(internal::broadcast_binary(g, bv, "div", [](T x, T y) { return x / y; }), av.shape()));
    if (in.wants(1)) {
      // d(a/b)/db = -(a/b) / b
      auto q = internal::broadcast_binary(out, bv, "div", [](T x, T y) { return -x / y; });
      in.add(1, internal::sum_to(internal::broadcast_binary(g, q, "div", [](T x, T y) { return x * y; }), bv.shape()));
    }
  });
}

template <class T>
Var<T> add_scalar(const Var<T>& x, T s) {
  return internal::unary("add_scalar", x, [s](T v) { return v + s; }, [](T, T) { return T(1); });
}
template <class T>
Var<T> mul_scalar(const Var<T>& x, T s) {
  return internal::unary("mul_scalar", x, [s](T v) { return v * s; }, [s](T, T) { return s; });
}
template <class T>
Var<T> neg(const Var<T>& x) {
  return mul_scalar(x, T(-1));
}

template <class T>
Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T>
Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T>
Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T>
Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T>
Var<T> operator-(const Var<T>& a) { return neg(a); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator+(const Var<T>& a, S s) { return add_scalar(a, T(s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator+(S s, const Var<T>& a) { return add_scalar(a, T(s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator-(const Var<T>& a, S s) { return add_scalar(a, T(-s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator-(S s, const Var<T>& a) { return add_scalar(neg(a), T(s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator*(const Var<T>& a, S s) { return mul_scalar(a, T(s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator*(S s, const Var<T>& a) { return mul_scalar(a, T(s)); }
template <class T, class S> requires std::is_arithmetic_v<S>
Var<T> operator/(const Var<T>& a, S s) { return mul_scalar(a, T(1) / T(s)); }

template <class T>
Var<T> relu(const Var<T>& x) {
  // NaN stays NaN (as in torch): a diverging activation must not turn into a confident 0.
  return internal::unary("relu", x, [](T v) { return v < T(0) ? T(0) : v; },
                         [](T v, T) { return v > T(0) ? T(1) : T(0); });
}

// Exact (erf) GELU, torch.nn.functional.gelu's default.
template <class T>
Var<T> gelu(const Var<T>& x) {
  return internal::unary(
      "gelu", x, [](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(M_SQRT1_2))); },
      [](T v, T) {
        T cdf = T(0.5) * (T(1) + std::erf(v * T(M_SQRT1_2)));
        T pdf = std::exp(T(-0.5) * v * v) * T(0.3989422804014327);  // 1/sqrt(2 pi)
        return cdf + v * pdf;
      });
}

template <class T>
Var<T> sigmoid(const Var<T>& x) {
  return internal::unary("sigmoid", x, [](T v) { return T(1) / (T(1) + std::exp(-v)); },
                         [](T, T y) { return y * (T(1) - y); });
}

template <class T>
Var<T> tanh(const Var<T>& x) {
  return internal::unary("tanh", x, [](T v) { return std::tanh(v); },
                         [](T, T y) { return T(1) - y * y; });
}

template <class T>
Var<T> exp(const Var<T>& x) {
  return internal::unary("exp", x, [](T v) { return std::exp(v); }, [](T, T y) { return y; });
}

template <class T>
Var<T> log(const Var<T>& x) {
  return internal::unary("log", x, [](T v) { return std::log(v); }, [](T v, T) { return T(1) / v; });
}

template <class T>
Var<T> sqrt(const Var<T>& x) {
  return internal::unary("sqrt", x, [](T v) { return std::sqrt(v); },
                         [](T, T y) { return T(0.5) / y; });
}

template <class T>
Var<T> square(const Var<T>& x) {
  return internal::unary("square", x, [](T v) { return v * v; }, [](T v, T) { return T(2) * v; });
}

// |x|, with gradient sign(x) (0 at 0, as torch).
template <class T>
Var<T> abs(const Var<T>& x) {
  return internal::unary("abs", x, [](T v) { return std::abs(v); },
                         [](T v, T) { return T((v > 0) - (v < 0)); });
}

// Clamp to [lo, hi]; gradient 1 where lo <= x <= hi (torch's clamp backward).
template <class T>
Var<T> clamp(const Var<T>& x, T lo, T hi) {
  return internal::unary("clamp", x, [lo, hi](T v) { return std::min(std::max(v, lo), hi); },
                         [lo, hi](T v, T) { return (v >= lo && v <= hi) ? T(1) : T(0); });
}

// log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps, exactly as the
// Deformable DETR reference `inverse_sigmoid(x, eps=1e-5)`, including its gradient.
template <class T>
Var<T> inverse_sigmoid(const Var<T>& x, T eps = T(1e-5)) {
  return internal::unary(
      "inverse_sigmoid", x,
      [eps](T v) {
        v = std::min(std::max(v, T(0)), T(1));
        return std::log(std::max(v, eps) / std::max(T(1) - v, eps));
      },
      [eps](T v, T) {
        if (v < T(0) || v > T(1)) return T(0);
        T d = T(0);
        if (v >= eps) d += T(1) / v;
        if (T(1) - v >= eps) d += T(1) / (T(1) - v);
        return d;
      });
}

}  // namespace detr
