#pragma once
// clip_grad_norm: torch.nn.utils.clip_grad_norm_ (torch 1.13). The total norm is the norm of the
// per-gradient norms (as if all gradients were one vector); every gradient is then scaled by
// clip_coef = max_norm / (total + 1e-6) when that is below 1. Returns the total norm.
//
// Parameters without a gradient are ignored. Gradients are scaled through Var::mutable_grad(),
// which first copies a buffer that another Var shares, so a gradient buffer shared between
// parameters (autograd may hand the same tensor to several inputs) is never scaled twice.
//
// Sums of squares accumulate in double (torch accumulates in float lanes), so the norm can differ
// from torch's in the last bit; it does not depend on the thread count.
//
// A NaN or infinite total norm is returned as is and, like torch, scales every gradient to
// NaN / zero; with error_if_nonfinite it throws instead, naming the first offending parameter.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/nn/module.hpp"

namespace detr {

namespace internal {

// Sum over a gradient of f(x) in double, in fixed chunks summed in order: the same bits for any
// thread count (an OpenMP reduction would combine partial sums in an unspecified order).
template <class T, class F>
double chunked_sum(const Tensor<T>& g, F f) {
  constexpr int64_t chunk = int64_t(1) << 14;
  const T* p = g.data();
  const int64_t n = g.numel(), chunks = (n + chunk - 1) / chunk;
  std::vector<double> partial(size_t(chunks), 0.0);
  parallel_for_if(chunks > 1, chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t end = std::min(n, (c + 1) * chunk);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = c * chunk; i < end; ++i) s += f(double(p[i]));
      partial[size_t(c)] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

// The norm of one gradient, rounded to T as torch.norm(g, p) returns it.
template <class T>
T grad_norm(const Tensor<T>& g, double norm_type) {
  if (std::isinf(norm_type)) {
    T m = 0;
    const T* p = g.data();
    for (int64_t i = 0; i < g.numel(); ++i) {
      T a = std::abs(p[i]);
      if (!(a <= m)) m = a;  // keeps a NaN once seen
    }
    return m;
  }
  if (norm_type == 2) return T(std::sqrt(chunked_sum(g, [](double x) { return x * x; })));
  double s = chunked_sum(g, [norm_type](double x) { return std::pow(std::abs(x), norm_type); });
  return T(std::pow(s, 1.0 / norm_type));
}

}  // namespace internal

/// \param params     parameters (from named_parameters); those without a grad are skipped
/// \param max_norm   the largest total norm left after clipping
/// \param norm_type  p of the p-norm (> 0), or INFINITY for the max-norm
/// \param error_if_nonfinite  throw detr::Error when the total norm is NaN or infinite
template <class T>
T clip_grad_norm(const std::vector<NamedParameter<T>>& params, double max_norm, double norm_type = 2.0,
                 bool error_if_nonfinite = false) {
  DETR_CHECK(norm_type > 0, "clip_grad_norm: norm_type must be > 0 or INFINITY, got " << norm_type);
  std::vector<T> norms;
  std::vector<size_t> with_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].var->grad().defined()) continue;
    norms.push_back(internal::grad_norm(params[i].var->grad(), norm_type));
    with_grad.push_back(i);
  }
  if (norms.empty()) return T(0);
  T total;
  if (std::isinf(norm_type)) {
    total = T(0);
    for (T v : norms)
      if (!(v <= total)) total = v;
  } else if (norm_type == 2) {
    double s = 0;
    for (T v : norms) s += double(v) * double(v);
    total = T(std::sqrt(s));
  } else {
    double s = 0;
    for (T v : norms) s += std::pow(double(v), norm_type);
    total = T(std::pow(s, 1.0 / norm_type));
  }
  if (error_if_nonfinite && !std::isfinite(total)) {
    std::string culprit = "none (the sum overflowed)";
    for (size_t k = 0; k < norms.size(); ++k)
      if (!std::isfinite(norms[k])) {
        culprit = "'" + params[with_grad[k]].name + "'";
        break;
      }
    DETR_FAIL("clip_grad_norm: the total norm of order " << norm_type << " over " << norms.size()
                                                         << " gradients is " << total
                                                         << ", so it cannot be clipped; first "
                                                            "non-finite gradient norm: "
                                                         << culprit);
  }
  // torch computes max_norm / (total + 1e-6) as (total + 1e-6).reciprocal() * max_norm in T.
  const T coef = (T(1) / (total + T(1e-6))) * T(max_norm);
  if (coef < T(1) || std::isnan(coef)) {
    for (size_t i : with_grad) {
      Tensor<T>& g = params[i].var->mutable_grad();
      T* p = g.data();
      const int64_t n = g.numel();
      parallel_for_simd(n >= (int64_t(1) << 15), n, [=](int64_t j) { p[j] *= coef; });
    }
  }
  return total;
}

// Every parameter of a module.
template <Module M>
typename M::Scalar clip_grad_norm(M& model, double max_norm, double norm_type = 2.0,
                                  bool error_if_nonfinite = false) {
  return clip_grad_norm(named_parameters(model), max_norm, norm_type, error_if_nonfinite);
}

}  // namespace detr
