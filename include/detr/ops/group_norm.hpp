#pragma once
// group_norm: torch.nn.functional.group_norm over [B, C, *] with its backward. Each image's
// channels split into `groups` runs of C / groups channels; each run is normalised with its own
// mean and biased variance, then scaled and shifted per channel (Wu & He 2018, eq. 1-3).
// Deformable DETR's input projections use GroupNorm(32, 256).
//
// A (image, group) run is contiguous, so the forward runs one run per thread. The backward
// reduces per (image, channel) first, as torch's CPU kernel does, then combines them in a fixed
// order; everything accumulates in double, so results are deterministic.
#include <cmath>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"

namespace detr {

/// x [B, C, *]; weight, bias [C] or undefined -> [B, C, *].
template <class T>
Var<T> group_norm(const Var<T>& x, int64_t groups, const Var<T>& weight = Var<T>(),
                  const Var<T>& bias = Var<T>(), T eps = T(1e-5)) {
  DETR_CHECK(x.rank() >= 2, "group_norm: input must be [B, C, *], got " << x.shape());
  const int64_t B = x.dim(0), C = x.dim(1), S = x.value().shape().prod(2, x.rank());
  DETR_CHECK(groups > 0 && C % groups == 0, "group_norm: input " << x.shape() << " has " << C
                                                                 << " channels, not divisible by groups="
                                                                 << groups);
  for (const Var<T>* p : {&weight, &bias})
    if (p->defined())
      DETR_CHECK(p->rank() == 1 && p->dim(0) == C,
                 "group_norm: " << (p == &weight ? "weight " : "bias ") << p->shape() << " vs input "
                                << x.shape() << " (expected [" << C << "])");
  const int64_t CG = C / groups, n = CG * S;
  const Tensor<T> xv = x.value();
  const T* px = xv.data();
  const T* pw = weight.defined() ? weight.value().data() : nullptr;
  const T* pb = bias.defined() ? bias.value().data() : nullptr;
  auto mean = Tensor<T>::empty(Shape{B, groups}), rstd = Tensor<T>::empty(Shape{B, groups});
  auto out = Tensor<T>::empty(xv.shape());
  T* po = out.data();
  const bool par = xv.numel() > (1 << 16);
  parallel_for_if(par, B * groups, [&](int64_t bg0, int64_t bg1) {
    for (int64_t bg = bg0; bg < bg1; ++bg) {
      const T* r = px + bg * n;
      double s = 0, q = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += r[i];
      const double m = n ? s / double(n) : 0.0;
#pragma omp simd reduction(+ : q)
      for (int64_t i = 0; i < n; ++i) q += (r[i] - m) * (r[i] - m);
      const T is = T(1 / std::sqrt((n ? q / double(n) : 0.0) + double(eps)));
      mean.data()[bg] = T(m);
      rstd.data()[bg] = is;
      const int64_t c0 = (bg % groups) * CG;
      for (int64_t k = 0; k < CG; ++k) {
        const T scale = (pw ? pw[c0 + k] : T(1)) * is, shift = (pb ? pb[c0 + k] : T(0)) - T(m) * scale;
        const T* rc = r + k * S;
        T* o = po + bg * n + k * S;
        for (int64_t i = 0; i < S; ++i) o[i] = rc[i] * scale + shift;
      }
    }
  });

  std::vector<Var<T>> inputs{x};
  const size_t iw = weight.defined() ? inputs.size() : size_t(-1);
  if (weight.defined()) inputs.push_back(weight);
  const size_t ib = bias.defined() ? inputs.size() : size_t(-1);
  if (bias.defined()) inputs.push_back(bias);
  Tensor<T> wv = weight.defined() ? weight.value() : Tensor<T>();
  return record("group_norm", out, std::move(inputs),
                [xv, wv, mean, rstd, B, C, S, groups, CG, n, iw, ib, par](const Tensor<T>& g, auto& in) {
    const T *px = xv.data(), *pg = g.data(), *pw = wv.defined() ? wv.data() : nullptr;
    // Per (image, channel): sum(g * x) and sum(g).
    std::vector<double> sgx(size_t(B * C)), sg(size_t(B * C));
    parallel_for_if(par, B * C, [&](int64_t bc0, int64_t bc1) {
      for (int64_t bc = bc0; bc < bc1; ++bc) {
        const T *r = px + bc * S, *gr = pg + bc * S;
        double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
        for (int64_t i = 0; i < S; ++i) {
          a += gr[i] * r[i];
          b += gr[i];
        }
        sgx[bc] = a;
        sg[bc] = b;
      }
    });
    if (in.wants(0)) {
      // dx = rstd (w g - mean(w g) - xhat mean(w g xhat)) over the run, with xhat = (x - m) rstd
      auto gx = Tensor<T>::empty(xv.shape());
      parallel_for_if(par, B * groups, [&](int64_t bg0, int64_t bg1) {
        for (int64_t bg = bg0; bg < bg1; ++bg) {
          const int64_t b = bg / groups, c0 = (bg % groups) * CG;
          const double m = mean.data()[bg], is = rstd.data()[bg];
          double sa = 0, sb = 0;  // sum(w g), sum(w g (x - m))
          for (int64_t k = 0; k < CG; ++k) {
            const double w = pw ? pw[c0 + k] : 1.0;
            sa += w * sg[b * C + c0 + k];
            sb += w * (sgx[b * C + c0 + k] - m * sg[b * C + c0 + k]);
          }
          const T cx = T(-sb * is * is * is / double(n));
          const T c1 = T((sb * is * is * m - sa) * is / double(n));
          for (int64_t k = 0; k < CG; ++k) {
            const T cg = (pw ? pw[c0 + k] : T(1)) * T(is);
            const int64_t off = bg * n + k * S;
            const T *r = px + off, *gr = pg + off;
            T* d = gx.data() + off;
            for (int64_t i = 0; i < S; ++i) d[i] = cg * gr[i] + cx * r[i] + c1;
          }
        }
      });
      in.add(0, std::move(gx));
    }
    if (in.wants(iw) || in.wants(ib)) {
      // dw[c] = sum_b (sum(g x) - m sum(g)) rstd, db[c] = sum_b sum(g), images in order
      auto gw = Tensor<T>::empty(Shape{C}), gb = Tensor<T>::empty(Shape{C});
      for (int64_t c = 0; c < C; ++c) {
        double dw = 0, db = 0;
        for (int64_t b = 0; b < B; ++b) {
          const int64_t bg = b * groups + c / CG;
          dw += (sgx[b * C + c] - double(mean.data()[bg]) * sg[b * C + c]) * double(rstd.data()[bg]);
          db += sg[b * C + c];
        }
        gw.data()[c] = T(dw);
        gb.data()[c] = T(db);
      }
      if (in.wants(iw)) in.add(iw, std::move(gw));
      if (in.wants(ib)) in.add(ib, std::move(gb));
    }
  });
}

}  // namespace detr
