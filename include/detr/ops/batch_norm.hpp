#pragma once
// batch_norm: torch.nn.functional.batch_norm over [B, C, *] (channel dim 1), with its backward.
//
// Training: normalise with the batch statistics (biased variance) and update the running stats
// in place as torch does: r = (1 - momentum) r + momentum s, with the *unbiased* variance.
// Evaluation: normalise with the running stats; the output is x * scale + shift per channel,
// which with weight and bias not requiring grad is torchvision's FrozenBatchNorm2d (DETR's
// backbone). Statistics accumulate in double (as torch's CPU kernel does) in an order fixed at
// compile time, one channel per thread, so results are deterministic.
#include <cmath>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"

namespace detr {

/// x [B, C, *]; running_mean, running_var [C] (updated when training; may be undefined then);
/// weight, bias [C] or undefined (affine=False) -> [B, C, *].
template <class T>
Var<T> batch_norm(const Var<T>& x, Tensor<T>& running_mean, Tensor<T>& running_var,
                  const Var<T>& weight, const Var<T>& bias, bool training, T momentum = T(0.1),
                  T eps = T(1e-5)) {
  DETR_CHECK(x.rank() >= 2, "batch_norm: input must be [B, C, *], got " << x.shape());
  const int64_t B = x.dim(0), C = x.dim(1), S = x.value().shape().prod(2, x.rank()), N = B * S;
  auto check_c = [&](const Shape& s, const char* what) {
    DETR_CHECK(s.rank() == 1 && s[0] == C, "batch_norm: " << what << " " << s << " vs input "
                                                          << x.shape() << " (expected [" << C << "])");
  };
  if (weight.defined()) check_c(weight.shape(), "weight");
  if (bias.defined()) check_c(bias.shape(), "bias");
  DETR_CHECK(running_mean.defined() == running_var.defined(),
             "batch_norm: running_mean and running_var must both be given or both be undefined");
  if (running_mean.defined()) {
    check_c(running_mean.shape(), "running_mean");
    check_c(running_var.shape(), "running_var");
  } else {
    DETR_CHECK(training, "batch_norm: evaluation mode needs running_mean and running_var");
  }
  if (training)
    DETR_CHECK(N > 1, "batch_norm: expected more than 1 value per channel when training, got input "
                          << x.shape());

  const Tensor<T> xv = x.value();
  const T* px = xv.data();
  const T* pw = weight.defined() ? weight.value().data() : nullptr;
  const T* pb = bias.defined() ? bias.value().data() : nullptr;
  // Per channel: the mean and 1/sqrt(var + eps) that normalised it (batch or running).
  auto mean = Tensor<T>::empty(Shape{C}), invstd = Tensor<T>::empty(Shape{C});
  auto out = Tensor<T>::empty(xv.shape());
  T* po = out.data();
  const bool par = xv.numel() > (1 << 16);
  parallel_for_if(par, C, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double m, var;
      if (training) {
        double s = 0;
        for (int64_t b = 0; b < B; ++b) {
          const T* r = px + (b * C + c) * S;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < S; ++i) s += r[i];
        }
        m = s / double(N);
        double q = 0;
        for (int64_t b = 0; b < B; ++b) {
          const T* r = px + (b * C + c) * S;
#pragma omp simd reduction(+ : q)
          for (int64_t i = 0; i < S; ++i) q += (r[i] - m) * (r[i] - m);
        }
        var = q / double(N);
        if (running_mean.defined()) {
          T* rm = running_mean.data() + c;
          T* rv = running_var.data() + c;
          *rm = T((1 - double(momentum)) * *rm + double(momentum) * m);
          *rv = T((1 - double(momentum)) * *rv + double(momentum) * q / double(N - 1));
        }
      } else {
        m = running_mean.data()[c];
        var = running_var.data()[c];
      }
      const T is = T(1 / std::sqrt(var + double(eps)));
      mean.data()[c] = T(m);
      invstd.data()[c] = is;
      const T scale = (pw ? pw[c] : T(1)) * is, shift = (pb ? pb[c] : T(0)) - T(m) * scale;
      for (int64_t b = 0; b < B; ++b) {
        const T* r = px + (b * C + c) * S;
        T* o = po + (b * C + c) * S;
        for (int64_t i = 0; i < S; ++i) o[i] = r[i] * scale + shift;
      }
    }
  });

  std::vector<Var<T>> inputs{x};
  const size_t iw = weight.defined() ? inputs.size() : size_t(-1);
  if (weight.defined()) inputs.push_back(weight);
  const size_t ib = bias.defined() ? inputs.size() : size_t(-1);
  if (bias.defined()) inputs.push_back(bias);
  Tensor<T> wv = weight.defined() ? weight.value() : Tensor<T>();
  return record("batch_norm", out, std::move(inputs),
                [xv, wv, mean, invstd, training, B, C, S, N, iw, ib, par](const Tensor<T>& g, auto& in) {
    const bool want_x = in.wants(0), want_w = in.wants(iw), want_b = in.wants(ib);
    Tensor<T> gx = want_x ? Tensor<T>::empty(xv.shape()) : Tensor<T>();
    Tensor<T> gw = want_w ? Tensor<T>::empty(Shape{C}) : Tensor<T>();
    Tensor<T> gb = want_b ? Tensor<T>::empty(Shape{C}) : Tensor<T>();
    const T *px = xv.data(), *pg = g.data(), *pw = wv.defined() ? wv.data() : nullptr;
    parallel_for_if(par, C, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const T m = mean.data()[c], is = invstd.data()[c];
        // sum(g) and sum(g * (x - mean)): the bias and weight gradients, and the projections the
        // training-mode input gradient removes.
        double sg = 0, sgx = 0;
        if (want_w || want_b || training)
          for (int64_t b = 0; b < B; ++b) {
            const T *r = px + (b * C + c) * S, *gr = pg + (b * C + c) * S;
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t i = 0; i < S; ++i) {
              sg += gr[i];
              sgx += gr[i] * (r[i] - m);
            }
          }
        if (want_w) gw.data()[c] = T(sgx * is);
        if (want_b) gb.data()[c] = T(sg);
        if (!want_x) continue;
        const T scale = (pw ? pw[c] : T(1)) * is;
        // training: dx = (g - mean(g) - (x - mean) invstd^2 mean(g (x - mean))) invstd w
        const T gmean = training ? T(sg / double(N)) : T(0);
        const T proj = training ? T(sgx / double(N)) * is * is : T(0);
        for (int64_t b = 0; b < B; ++b) {
          const T *r = px + (b * C + c) * S, *gr = pg + (b * C + c) * S;
          T* d = gx.data() + (b * C + c) * S;
          for (int64_t i = 0; i < S; ++i) d[i] = (gr[i] - gmean - (r[i] - m) * proj) * scale;
        }
      }
    });
    if (want_x) in.add(0, std::move(gx));
    if (want_w) in.add(iw, std::move(gw));
    if (want_b) in.add(ib, std::move(gb));
  });
}

}  // namespace detr
