#pragma once
// interpolate_nearest: torch.nn.functional.interpolate(mode='nearest') with an output size, on
// the last two dims of any [..., H, W] tensor, with its backward. The Tensor overload resizes
// masks without autograd (DETR: F.interpolate(m[None].float(), size=...).to(torch.bool)[0]).
//
// Index rule, as torch's CPU kernel (UpSample.h, nearest_idx): src = dst when the sizes match,
// dst / 2 for an exact 2x upsample, otherwise min(floor(dst * scale), in - 1) with
// scale = float(in) / out computed in single precision, so every size picks torch's pixel.
#include <cmath>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"

namespace detr {

namespace internal {

inline std::vector<int64_t> nearest_source_indices(int64_t in, int64_t out) {
  std::vector<int64_t> idx(static_cast<size_t>(out));
  const float scale = float(in) / float(out);
  for (int64_t d = 0; d < out; ++d)
    idx[d] = out == in ? d
             : out == 2 * in ? d >> 1
                             : std::min(int64_t(std::floor(float(d) * scale)), in - 1);
  return idx;
}

inline Shape nearest_out_shape(const Shape& s, int64_t out_h, int64_t out_w) {
  DETR_CHECK(s.rank() >= 2, "interpolate_nearest: input must be [..., H, W], got " << s);
  DETR_CHECK(out_h > 0 && out_w > 0, "interpolate_nearest: output size (" << out_h << ", " << out_w
                                                                        << ") must be positive");
  DETR_CHECK(s.dim(-2) > 0 && s.dim(-1) > 0,
             "interpolate_nearest: input " << s << " has an empty spatial size");
  Shape o = s;
  o[s.rank() - 2] = out_h;
  o[s.rank() - 1] = out_w;
  return o;
}

}  // namespace internal

/// x [..., H, W] -> [..., out_h, out_w], no autograd (masks, images).
template <class T>
Tensor<T> interpolate_nearest(const Tensor<T>& x, int64_t out_h, int64_t out_w) {
  auto out = Tensor<T>::empty(internal::nearest_out_shape(x.shape(), out_h, out_w));
  const int64_t H = x.dim(-2), W = x.dim(-1), planes = x.numel() / (H * W);
  const auto ih = internal::nearest_source_indices(H, out_h);
  const auto iw = internal::nearest_source_indices(W, out_w);
  const T* px = x.data();
  T* po = out.data();
  parallel_for_if(out.numel() > (1 << 16), planes, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) for (int64_t oh = 0; oh < out_h; ++oh) {
        const T* src = px + (n * H + ih[oh]) * W;
        T* dst = po + (n * out_h + oh) * out_w;
        for (int64_t ow = 0; ow < out_w; ++ow) dst[ow] = src[iw[ow]];
      }
  });
  return out;
}

/// x [..., H, W] -> [..., out_h, out_w]; the gradient of each input pixel is the sum over the
/// output pixels that copied it.
template <class T>
Var<T> interpolate_nearest(const Var<T>& x, int64_t out_h, int64_t out_w) {
  auto out = interpolate_nearest(x.value(), out_h, out_w);
  auto backward = [in_shape = x.shape(), out_h, out_w](const Tensor<T>& g, auto& in) {
    const int64_t H = in_shape.dim(-2), W = in_shape.dim(-1), planes = in_shape.numel() / (H * W);
    const auto ih = internal::nearest_source_indices(H, out_h);
    const auto iw = internal::nearest_source_indices(W, out_w);
    auto gx = Tensor<T>::zeros(in_shape);
    const T* pg = g.data();
    T* pd = gx.data();
    // Planes are independent; within one, outputs add in row-major order.
    parallel_for_if(g.numel() > (1 << 16), planes, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) for (int64_t oh = 0; oh < out_h; ++oh) {
          T* dst = pd + (n * H + ih[oh]) * W;
          const T* src = pg + (n * out_h + oh) * out_w;
          for (int64_t ow = 0; ow < out_w; ++ow) dst[iw[ow]] += src[ow];
        }
    });
    in.add(0, std::move(gx));
  };
  return record("interpolate_nearest", out, {x}, std::move(backward));
}

}  // namespace detr
