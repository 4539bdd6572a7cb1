#pragma once
// layer_norm over the last dimension with an affine weight and bias (torch.nn.LayerNorm), fused:
// one pass for the statistics and output, one for all three gradients.
#include <cmath>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/gpu/rows.hpp"

namespace detr {

// x [..., D], weight [D], bias [D] -> [..., D]
template <class T, class Dev>
Var<T, Dev> layer_norm(const Var<T, Dev>& x, const Var<T, Dev>& weight, const Var<T, Dev>& bias, double eps = 1e-5) {
  const int64_t D = x.rank() ? x.dim(-1) : 0;
  DETR_CHECK(x.rank() >= 1 && weight.shape() == Shape{D} && bias.shape() == Shape{D},
             "layer_norm: input " << x.shape() << " needs weight and bias [" << D << "], got "
                                  << weight.shape() << " and " << bias.shape());
  const int64_t R = D ? x.numel() / D : 0;
  if constexpr (is_cuda<Dev>) {
    const Tensor<T, Dev> xv = x.value(), wv = weight.value();
    auto y = Tensor<T, Dev>::empty(xv.shape());
    auto mean = Tensor<T, Dev>::empty({R}), rstd = Tensor<T, Dev>::empty({R});
    gpu::layer_norm_forward(xv.data(), wv.data(), bias.value().data(), y.data(), mean.data(), rstd.data(), R, D, T(eps));
    return record("layer_norm", y, {x, weight, bias}, [xv, wv, mean, rstd, R, D](const Tensor<T, Dev>& g, auto& in) {
      Tensor<T, Dev> dx;
      if (in.wants(0)) dx = Tensor<T, Dev>::empty(xv.shape());
      auto dw = Tensor<T, Dev>::empty({D}), db = Tensor<T, Dev>::empty({D});
      gpu::layer_norm_backward(g.data(), xv.data(), wv.data(), mean.data(), rstd.data(),
                               dx.defined() ? dx.data() : nullptr, dw.data(), db.data(), R, D);
      if (dx.defined()) in.add(0, std::move(dx));
      in.add(1, std::move(dw));
      in.add(2, std::move(db));
    });
  } else {
    const Tensor<T> xv = x.value(), wv = weight.value(), bv = bias.value();
    auto y = Tensor<T>::empty(xv.shape());
    auto mean = Tensor<T>::empty({R}), rstd = Tensor<T>::empty({R});
    parallel_for_if(xv.numel() > (1 << 15), R, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xv.data() + r * D;
        T* yr = y.data() + r * D;
        // SIMD reductions (a fixed lane order, the same bits every run): summed strictly left to
        // right, each was one scalar add per element.
        T m = 0;
#pragma omp simd reduction(+ : m)
        for (int64_t j = 0; j < D; ++j) m += xr[j];
        m /= T(D);
        T var = 0;
#pragma omp simd reduction(+ : var)
        for (int64_t j = 0; j < D; ++j) var += (xr[j] - m) * (xr[j] - m);
        T rs = T(1) / std::sqrt(var / T(D) + T(eps));
        mean.data()[r] = m;
        rstd.data()[r] = rs;
        for (int64_t j = 0; j < D; ++j) yr[j] = (xr[j] - m) * rs * wv.data()[j] + bv.data()[j];
      }
    });
    return record("layer_norm", y, {x, weight, bias},
                  [xv, wv, mean, rstd, R, D](const Tensor<T>& g, auto& in) {
      Tensor<T> dx;
      if (in.wants(0)) dx = Tensor<T>::empty(xv.shape());
      // dweight / dbias: partial sums over fixed row ranges, added in range order (the same bits
      // for any thread count).
      const int64_t ranges = xv.numel() > (1 << 15) ? std::min<int64_t>(R, 16) : 1;
      auto partial = Tensor<T>::zeros({ranges, 2, D});
      parallel_chunks(ranges, [&](int64_t c) {
        T* dw = partial.data() + c * 2 * D;
        T* db = dw + D;
        for (int64_t r = c * R / ranges; r < (c + 1) * R / ranges; ++r) {
          const T *xr = xv.data() + r * D, *gr = g.data() + r * D;
          const T m = mean.data()[r], rs = rstd.data()[r];
          T sum_dxh = 0, sum_dxh_xh = 0;
#pragma omp simd reduction(+ : sum_dxh, sum_dxh_xh)
          for (int64_t j = 0; j < D; ++j) {
            T xh = (xr[j] - m) * rs, dxh = gr[j] * wv.data()[j];
            dw[j] += gr[j] * xh;
            db[j] += gr[j];
            sum_dxh += dxh;
            sum_dxh_xh += dxh * xh;
          }
          if (dx.defined()) {
            T* dr = dx.data() + r * D;
            const T a = sum_dxh / T(D), b = sum_dxh_xh / T(D);
            for (int64_t j = 0; j < D; ++j) {
              T xh = (xr[j] - m) * rs;
              dr[j] = rs * (gr[j] * wv.data()[j] - a - xh * b);
            }
          }
        }
      });
      auto dw = Tensor<T>::zeros({D}), db = Tensor<T>::zeros({D});
      for (int64_t c = 0; c < ranges; ++c) {
        dw.arr() += partial[c][0].arr();
        db.arr() += partial[c][1].arr();
      }
      if (dx.defined()) in.add(0, std::move(dx));
      in.add(1, std::move(dw));
      in.add(2, std::move(db));
    });
  }
}

}  // namespace detr
