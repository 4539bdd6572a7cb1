#pragma once
// conv2d: torch.nn.functional.conv2d (stride, zero padding, dilation, groups) as im2col + GEMM,
// with its backward (col2im for the input, GEMMs for the weight, a sum for the bias).
//
// Layout: the columns of a band of output rows [oh0, oh1) are [Cin * KH * KW, (oh1 - oh0) * OW]
// (row r = (c * KH + kh) * KW + kw), so group g's weight block [Cout/G, Cin/G * KH * KW]
// multiplies a contiguous block of rows. Bands hold about 2 MB of columns: they stay in cache
// between im2col and the GEMM, and memory does not grow with the image (a 7x7 stem on an
// 800x1066 image would otherwise need 125 MB of columns per image).
// Threads: with several images, one image per thread (its own band buffer, single-threaded
// GEMM); with one image, im2col runs over rows in parallel and Eigen threads the GEMM.
// 1x1 stride-1 unpadded convolutions read the image itself as the column matrix.
// Every sum has a fixed order (the weight gradient accumulates images and bands in order), the
// same for any thread count.
#include <algorithm>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/ops/gemm.hpp"
#include "detr/ops/window.hpp"

namespace detr {

namespace internal {

struct ConvGeometry {
  int64_t C, H, W;     // input channels and size (per image, all groups)
  int64_t KH, KW;      // kernel
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t OH, OW;      // output size
  int64_t rows() const { return C * KH * KW; }
  int64_t cols() const { return OH * OW; }
  bool pointwise() const { return KH == 1 && KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
  // Output rows per band: about 2^19 column elements (2 MB of floats), at least one row.
  int64_t band_rows() const {
    return pointwise() ? OH : std::clamp<int64_t>((int64_t(1) << 19) / std::max<int64_t>(rows() * OW, 1), 1, OH);
  }
};

// col [C*KH*KW, (oh1 - oh0) * OW]: the columns of output rows [oh0, oh1) of one image
// x [C, H, W]; padding reads as 0.
template <class T>
void im2col(const T* x, const ConvGeometry& g, int64_t oh0, int64_t oh1, T* col, bool parallel) {
  const int64_t n = (oh1 - oh0) * g.OW, rows = g.rows();
  parallel_for_if(parallel && rows * n > (1 << 15), rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / (g.KH * g.KW), kh = (r / g.KW) % g.KH, kw = r % g.KW;
      const int64_t offh = kh * g.dh - g.ph, offw = kw * g.dw - g.pw;
      const ValidRange vh = valid_range(offh, g.sh, g.H, g.OH), vw = valid_range(offw, g.sw, g.W, g.OW);
      const int64_t lo = std::clamp(vh.lo, oh0, oh1), hi = std::clamp(vh.hi, oh0, oh1);
      T* dst = col + r * n;
      std::fill(dst, dst + (lo - oh0) * g.OW, T(0));
      for (int64_t oh = lo; oh < hi; ++oh) {
        const T* src = x + (c * g.H + oh * g.sh + offh) * g.W;  // input row; column ow * sw + offw
        T* d = dst + (oh - oh0) * g.OW;
        std::fill(d, d + vw.lo, T(0));
        if (g.sw == 1)
          for (int64_t ow = vw.lo; ow < vw.hi; ++ow) d[ow] = src[ow + offw];
        else
          for (int64_t ow = vw.lo; ow < vw.hi; ++ow) d[ow] = src[ow * g.sw + offw];
        std::fill(d + vw.hi, d + g.OW, T(0));
      }
      std::fill(dst + (hi - oh0) * g.OW, dst + n, T(0));
    }
  });
}

// dx [C, H, W] += the contributions of the columns of output rows [oh0, oh1) (the adjoint of
// im2col). Channels are independent, and within one the rows are added in a fixed order.
template <class T>
void col2im(const T* col, const ConvGeometry& g, int64_t oh0, int64_t oh1, T* dx, bool parallel) {
  const int64_t n = (oh1 - oh0) * g.OW, K2 = g.KH * g.KW;
  parallel_for_if(parallel && g.rows() * n > (1 << 15), g.C, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t k = 0; k < K2; ++k) {
        const int64_t kh = k / g.KW, kw = k % g.KW;
        const int64_t offh = kh * g.dh - g.ph, offw = kw * g.dw - g.pw;
        const ValidRange vh = valid_range(offh, g.sh, g.H, g.OH), vw = valid_range(offw, g.sw, g.W, g.OW);
        const int64_t lo = std::clamp(vh.lo, oh0, oh1), hi = std::clamp(vh.hi, oh0, oh1);
        const T* src = col + (c * K2 + k) * n;
        for (int64_t oh = lo; oh < hi; ++oh) {
          T* d = dx + (c * g.H + oh * g.sh + offh) * g.W;
          const T* s = src + (oh - oh0) * g.OW;
          if (g.sw == 1)
            for (int64_t ow = vw.lo; ow < vw.hi; ++ow) d[ow + offw] += s[ow];
          else
            for (int64_t ow = vw.lo; ow < vw.hi; ++ow) d[ow * g.sw + offw] += s[ow];
        }
      }
    }
  });
}

// Runs f(b, buffer, inner_parallel) for every image b: one image per thread when `outer`, each
// thread with its own uninitialised scratch buffer of `scratch` elements; otherwise in order,
// letting f parallelise inside.
template <class T, class F>
void for_each_image(int64_t B, bool outer, int64_t scratch, F f) {
  if (outer) {
    parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      auto buf = Tensor<T>::empty(Shape{scratch});
      for (int64_t b = b0; b < b1; ++b) f(b, buf.data(), false);
    });
  } else {
    auto buf = Tensor<T>::empty(Shape{scratch});
    for (int64_t b = 0; b < B; ++b) f(b, buf.data(), true);
  }
}

}  // namespace internal

/// 2-d convolution (cross-correlation), torch.nn.functional.conv2d.
/// x [B, Cin, H, W], weight [Cout, Cin / groups, KH, KW], bias [Cout] or undefined
/// -> [B, Cout, OH, OW] with OH = (H + 2 pad - dilation (KH - 1) - 1) / stride + 1.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = Var<T>(),
              Size2 stride = 1, Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1) {
  DETR_CHECK(x.rank() == 4, "conv2d: input must be [B, Cin, H, W], got " << x.shape());
  DETR_CHECK(weight.rank() == 4,
             "conv2d: weight must be [Cout, Cin / groups, KH, KW], got " << weight.shape());
  DETR_CHECK(groups >= 1, "conv2d: groups must be positive, got " << groups);
  internal::check_window("conv2d", Size2(weight.dim(2), weight.dim(3)), stride, padding, dilation);
  const int64_t B = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Cout = weight.dim(0), CinG = weight.dim(1), KH = weight.dim(2), KW = weight.dim(3);
  DETR_CHECK(Cout % groups == 0, "conv2d: weight " << weight.shape() << " has " << Cout
                                                   << " output channels, not divisible by groups="
                                                   << groups);
  DETR_CHECK(CinG * groups == Cin, "conv2d: input " << x.shape() << " has " << Cin
                                                    << " channels but weight " << weight.shape()
                                                    << " with groups=" << groups << " expects "
                                                    << CinG * groups);
  if (bias.defined())
    DETR_CHECK(bias.rank() == 1 && bias.dim(0) == Cout,
               "conv2d: bias " << bias.shape() << " vs weight " << weight.shape() << " (expected ["
                               << Cout << "])");
  const int64_t OH = internal::window_out_size(H, KH, stride.h, padding.h, dilation.h);
  const int64_t OW = internal::window_out_size(W, KW, stride.w, padding.w, dilation.w);
  DETR_CHECK(OH > 0 && OW > 0, "conv2d: input " << x.shape() << " padded by " << padding
                                                << " is smaller than the kernel " << weight.shape()
                                                << " dilated by " << dilation);
  const internal::ConvGeometry geo{Cin, H, W, KH, KW, stride.h, stride.w, padding.h, padding.w,
                                   dilation.h, dilation.w, OH, OW};
  const int64_t P = geo.cols(), CoutG = Cout / groups, Kg = CinG * KH * KW;
  const bool pointwise = geo.pointwise();
  const int64_t band = geo.band_rows(), scratch = pointwise ? 0 : geo.rows() * band * OW;
  // One image per thread pays off once there are several images with real work each.
  const bool outer = B > 1 && num_threads() > 1 && Cout * P * Kg * groups > (1 << 14);

  const Tensor<T> xv = x.value(), wv = weight.value();
  auto out = Tensor<T>::empty(Shape{B, Cout, OH, OW});
  const T* pb = bias.defined() ? bias.value().data() : nullptr;
  internal::for_each_image<T>(B, outer, scratch, [&](int64_t b, T* buf, bool par) {
    const T* xb = xv.data() + b * Cin * H * W;
    T* ob = out.data() + b * Cout * P;
    if (pb)
      for (int64_t c = 0; c < Cout; ++c) std::fill(ob + c * P, ob + (c + 1) * P, pb[c]);
    for (int64_t oh0 = 0; oh0 < OH; oh0 += band) {
      const int64_t oh1 = std::min(OH, oh0 + band), n = (oh1 - oh0) * OW;
      const T* col = xb;  // a pointwise conv has one band: the image itself
      if (!pointwise) {
        internal::im2col(xb, geo, oh0, oh1, buf, par);
        col = buf;
      }
      for (int64_t g = 0; g < groups; ++g)
        internal::gemm(false, false, CoutG, n, Kg, wv.data() + g * CoutG * Kg, Kg, col + g * Kg * n, n,
                          ob + g * CoutG * P + oh0 * OW, P, pb ? T(1) : T(0));
    }
  });

  std::vector<Var<T>> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("conv2d", out, std::move(inputs),
                [xv, wv, geo, groups, outer, scratch, pointwise, band, B, Cout, CoutG, Kg, P](
                    const Tensor<T>& g, auto& in) {
    const int64_t Cin = geo.C, HW = geo.H * geo.W, OH = geo.OH, OW = geo.OW;
    if (in.wants(0)) {  // dcol = W_g^T g_g per band, then scattered back (col2im)
      auto gx = pointwise ? Tensor<T>::empty(xv.shape()) : Tensor<T>::zeros(xv.shape());
      internal::for_each_image<T>(B, outer, scratch, [&](int64_t b, T* buf, bool par) {
        T* gxb = gx.data() + b * Cin * HW;
        for (int64_t oh0 = 0; oh0 < OH; oh0 += band) {
          const int64_t oh1 = std::min(OH, oh0 + band), n = (oh1 - oh0) * OW;
          T* dcol = pointwise ? gxb : buf;
          for (int64_t k = 0; k < groups; ++k)
            internal::gemm(true, false, Kg, n, CoutG, wv.data() + k * CoutG * Kg, Kg,
                              g.data() + (b * Cout + k * CoutG) * P + oh0 * OW, P, dcol + k * Kg * n, n,
                              T(0));
          if (!pointwise) internal::col2im(buf, geo, oh0, oh1, gxb, par);
        }
      });
      in.add(0, std::move(gx));
    }
    if (in.wants(1)) {  // dW_g = sum over images and bands of g_bg col_bg^T, in order
      auto gw = Tensor<T>::zeros(wv.shape());
      internal::for_each_image<T>(B, false, scratch, [&](int64_t b, T* buf, bool par) {
        const T* xb = xv.data() + b * Cin * HW;
        for (int64_t oh0 = 0; oh0 < OH; oh0 += band) {
          const int64_t oh1 = std::min(OH, oh0 + band), n = (oh1 - oh0) * OW;
          const T* col = xb;
          if (!pointwise) {
            internal::im2col(xb, geo, oh0, oh1, buf, par);
            col = buf;
          }
          for (int64_t k = 0; k < groups; ++k)
            internal::gemm(false, true, CoutG, Kg, n, g.data() + (b * Cout + k * CoutG) * P + oh0 * OW, P,
                              col + k * Kg * n, n, gw.data() + k * CoutG * Kg, Kg, T(1));
        }
      });
      in.add(1, std::move(gw));
    }
    if (in.wants(2)) {
      auto gb = Tensor<T>::empty(Shape{Cout});
      parallel_for_if(B * Cout * P > (1 << 16), Cout, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          T acc = 0;
          for (int64_t b = 0; b < B; ++b) {
            const T* gp = g.data() + (b * Cout + c) * P;
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t p = 0; p < P; ++p) s += gp[p];
            acc += s;
          }
          gb.data()[c] = acc;
        }
      });
      in.add(2, std::move(gb));
    }
  });
}

}  // namespace detr
