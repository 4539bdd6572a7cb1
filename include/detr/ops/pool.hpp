#pragma once
// max_pool2d: torch.nn.functional.max_pool2d (ceil_mode=False, dilation 1) with its backward.
//
// As torch's CPU kernel: padding never wins (it acts as -inf), a NaN wins and propagates, and on
// ties the first maximum in row-major window order keeps the index, so the gradient goes to
// exactly one input per output. The argmax of each output is kept for the backward.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/ops/window.hpp"

namespace detr {

/// x [B, C, H, W] (or [C, H, W]) -> [B, C, OH, OW], OH = (H + 2 padding - kernel) / stride + 1.
/// stride defaults to the kernel size, as in torch.
template <class T>
Var<T> max_pool2d(const Var<T>& x, Size2 kernel, Size2 stride = 0, Size2 padding = 0) {
  if (stride.h == 0 && stride.w == 0) stride = kernel;
  DETR_CHECK(x.rank() == 4 || x.rank() == 3,
             "max_pool2d: input must be [B, C, H, W] or [C, H, W], got " << x.shape());
  internal::check_window("max_pool2d", kernel, stride, padding, 1);
  // torch: "pad should be at most half of effective kernel size"; a window could otherwise lie
  // entirely in the padding.
  DETR_CHECK(2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w,
             "max_pool2d: padding " << padding << " must be at most half the kernel " << kernel);
  const int r = x.rank();
  const int64_t H = x.dim(r - 2), W = x.dim(r - 1), planes = x.numel() / std::max<int64_t>(H * W, 1);
  const int64_t OH = internal::window_out_size(H, kernel.h, stride.h, padding.h, 1);
  const int64_t OW = internal::window_out_size(W, kernel.w, stride.w, padding.w, 1);
  DETR_CHECK(OH > 0 && OW > 0, "max_pool2d: input " << x.shape() << " padded by " << padding
                                                    << " is smaller than the kernel " << kernel);
  Shape os = x.shape();
  os[r - 2] = OH;
  os[r - 1] = OW;
  const Tensor<T> xv = x.value();
  auto out = Tensor<T>::empty(os);
  // Flat index into the input plane of each output's maximum.
  auto argmax = std::make_shared<std::vector<int32_t>>(size_t(out.numel()));
  DETR_CHECK(H * W <= std::numeric_limits<int32_t>::max(),
             "max_pool2d: input plane " << x.shape() << " too large");
  const T* px = xv.data();
  T* po = out.data();
  int32_t* pi = argmax->data();
  // One output row at a time, kernel taps in torch's window order (row-major), each tap swept
  // over the row's outputs: the sweep has no branches and vectorises, and every output still
  // sees its window's elements in torch's order, so ties and NaNs resolve identically.
  parallel_for_if(out.numel() * kernel.h * kernel.w > (1 << 16), planes, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xp = px + n * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = oh * stride.h - padding.h;
        const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + kernel.h, H);
        T* m = po + (n * OH + oh) * OW;
        int32_t* best = pi + (n * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ++ow) {  // padding never wins: start at -inf, first real index
          m[ow] = -std::numeric_limits<T>::infinity();
          best[ow] = int32_t(hs * W + std::max<int64_t>(ow * stride.w - padding.w, 0));
        }
        for (int64_t ih = hs; ih < he; ++ih)
          for (int64_t kw = 0; kw < kernel.w; ++kw) {
            const int64_t off = kw - padding.w;
            const internal::ValidRange vw = internal::valid_range(off, stride.w, W, OW);
            const T* row = xp + ih * W;
            const int32_t base = int32_t(ih * W + off);
            const int64_t sw = stride.w;
#pragma omp simd
            for (int64_t ow = vw.lo; ow < vw.hi; ++ow) {
              const T v = row[off + ow * sw];
              const bool take = (v > m[ow]) | (v != v);  // a NaN wins, as in torch
              m[ow] = take ? v : m[ow];
              best[ow] = take ? base + int32_t(ow * sw) : best[ow];
            }
          }
      }
    }
  });
  return record("max_pool2d", out, {x}, [argmax, in_shape = x.shape(), planes, HW = H * W,
                                         P = OH * OW](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::zeros(in_shape);
    const T* pg = g.data();
    const int32_t* pi = argmax->data();
    T* pd = gx.data();
    // Planes are independent; within one the outputs add in order (windows overlap).
    parallel_for_if(planes * P > (1 << 16), planes, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) for (int64_t o = 0; o < P; ++o) pd[n * HW + pi[n * P + o]] += pg[n * P + o];
    });
    in.add(0, std::move(gx));
  });
}

}  // namespace detr
