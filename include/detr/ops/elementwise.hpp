#pragma once
// Element-wise ops with broadcasting (add, sub, mul, div), scalar ops, and activations, each
// with its backward beside it. Broadcast inputs get their gradient summed back to their shape.
// The math of each is a functor of ops/elementwise_math.hpp, which the CUDA kernels run too.
#include <cmath>
#include <concepts>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/broadcast.hpp"
#include "detr/ops/elementwise_math.hpp"

namespace detr {

namespace internal {

// y = f(x); dy/dx = f.grad(x, y) (element-wise, fused into one pass each way).
template <class T, class D, class F>
Var<T, D> unary(const char* op, const Var<T, D>& x, F f) {
  const Tensor<T, D> xv = x.value();
  auto y = Tensor<T, D>::empty(xv.shape());
  const T* px = xv.data();
  T* py = y.data();
  int64_t n = xv.numel();
  if constexpr (is_cuda<D>) gpu::map(px, py, n, f);
  else parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { py[i] = f(px[i]); });
  return record(op, y, {x}, [xv, y, f](const Tensor<T, D>& g, auto& in) {
    auto gx = Tensor<T, D>::empty(g.shape());
    const T *pg = g.data(), *px = xv.data(), *py = y.data();
    T* po = gx.data();
    int64_t n = g.numel();
    if constexpr (is_cuda<D>) gpu::map_grad(pg, px, py, po, n, f);
    else parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { po[i] = pg[i] * f.grad(px[i], py[i]); });
    in.add(0, std::move(gx));
  });
}

}  // namespace internal

template <class T, class D>
Var<T, D> add(const Var<T, D>& a, const Var<T, D>& b) {
  auto out = internal::broadcast_binary(a.value(), b.value(), "add", math::Plus{});
  return record("add", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(g, sa));
    if (in.wants(1)) in.add(1, internal::sum_to(g, sb));
  });
}

template <class T, class D>
Var<T, D> sub(const Var<T, D>& a, const Var<T, D>& b) {
  auto out = internal::broadcast_binary(a.value(), b.value(), "sub", math::Minus{});
  return record("sub", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor<T, D>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(g, sa));
    if (in.wants(1)) {
      auto n = internal::sum_to(g, sb);
      in.add(1, internal::broadcast_binary(n, n, "sub", math::NegateFirst{}));
    }
  });
}

template <class T, class D>
Var<T, D> mul(const Var<T, D>& a, const Var<T, D>& b) {
  const Tensor<T, D> av = a.value(), bv = b.value();
  auto out = internal::broadcast_binary(av, bv, "mul", math::Times{});
  return record("mul", out, {a, b}, [av, bv](const Tensor<T, D>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(internal::broadcast_binary(g, bv, "mul", math::Times{}), av.shape()));
    if (in.wants(1)) in.add(1, internal::sum_to(internal::broadcast_binary(g, av, "mul", math::Times{}), bv.shape()));
  });
}

template <class T, class D>
Var<T, D> div(const Var<T, D>& a, const Var<T, D>& b) {
  const Tensor<T, D> av = a.value(), bv = b.value();
  auto out = internal::broadcast_binary(av, bv, "div", math::Divide{});
  return record("div", out, {a, b}, [av, bv, out](const Tensor<T, D>& g, auto& in) {
    if (in.wants(0)) in.add(0, internal::sum_to(internal::broadcast_binary(g, bv, "div", math::Divide{}), av.shape()));
    if (in.wants(1)) {
      // d(a/b)/db = -(a/b) / b
      auto q = internal::broadcast_binary(out, bv, "div", math::NegDivide{});
      in.add(1, internal::sum_to(internal::broadcast_binary(g, q, "div", math::Times{}), bv.shape()));
    }
  });
}

template <class T, class D>
Var<T, D> add_scalar(const Var<T, D>& x, T s) {
  return internal::unary("add_scalar", x, math::AddScalar<T>{s});
}
template <class T, class D>
Var<T, D> mul_scalar(const Var<T, D>& x, T s) {
  return internal::unary("mul_scalar", x, math::MulScalar<T>{s});
}
template <class T, class D>
Var<T, D> neg(const Var<T, D>& x) {
  return mul_scalar(x, T(-1));
}

template <class T, class D>
Var<T, D> operator+(const Var<T, D>& a, const Var<T, D>& b) { return add(a, b); }
template <class T, class D>
Var<T, D> operator-(const Var<T, D>& a, const Var<T, D>& b) { return sub(a, b); }
template <class T, class D>
Var<T, D> operator*(const Var<T, D>& a, const Var<T, D>& b) { return mul(a, b); }
template <class T, class D>
Var<T, D> operator/(const Var<T, D>& a, const Var<T, D>& b) { return div(a, b); }
template <class T, class D>
Var<T, D> operator-(const Var<T, D>& a) { return neg(a); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator+(const Var<T, D>& a, S s) { return add_scalar(a, T(s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator+(S s, const Var<T, D>& a) { return add_scalar(a, T(s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator-(const Var<T, D>& a, S s) { return add_scalar(a, T(-s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator-(S s, const Var<T, D>& a) { return add_scalar(neg(a), T(s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator*(const Var<T, D>& a, S s) { return mul_scalar(a, T(s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator*(S s, const Var<T, D>& a) { return mul_scalar(a, T(s)); }
template <class T, class D, class S> requires std::is_arithmetic_v<S>
Var<T, D> operator/(const Var<T, D>& a, S s) { return mul_scalar(a, T(1) / T(s)); }

template <class T, class D>
Var<T, D> relu(const Var<T, D>& x) {
  return internal::unary("relu", x, math::Relu{});
}
template <class T, class D>
Var<T, D> gelu(const Var<T, D>& x) {
  return internal::unary("gelu", x, math::Gelu{});
}
template <class T, class D>
Var<T, D> sigmoid(const Var<T, D>& x) {
  return internal::unary("sigmoid", x, math::Sigmoid{});
}
template <class T, class D>
Var<T, D> tanh(const Var<T, D>& x) {
  return internal::unary("tanh", x, math::Tanh{});
}
template <class T, class D>
Var<T, D> exp(const Var<T, D>& x) {
  return internal::unary("exp", x, math::Exp{});
}
template <class T, class D>
Var<T, D> log(const Var<T, D>& x) {
  return internal::unary("log", x, math::Log{});
}
template <class T, class D>
Var<T, D> sqrt(const Var<T, D>& x) {
  return internal::unary("sqrt", x, math::Sqrt{});
}
template <class T, class D>
Var<T, D> square(const Var<T, D>& x) {
  return internal::unary("square", x, math::Square{});
}
// |x|, with gradient sign(x) (0 at 0, as torch).
template <class T, class D>
Var<T, D> abs(const Var<T, D>& x) {
  return internal::unary("abs", x, math::Abs{});
}
// Clamp to [lo, hi]; gradient 1 where lo <= x <= hi (torch's clamp backward).
template <class T, class D>
Var<T, D> clamp(const Var<T, D>& x, T lo, T hi) {
  return internal::unary("clamp", x, math::Clamp<T>{lo, hi});
}
// The Deformable DETR reference's inverse_sigmoid(x, eps=1e-5), including its gradient.
template <class T, class D>
Var<T, D> inverse_sigmoid(const Var<T, D>& x, T eps = T(1e-5)) {
  return internal::unary("inverse_sigmoid", x, math::InverseSigmoid<T>{eps});
}

}  // namespace detr
