#pragma once
// Sliding-window geometry shared by conv2d and max_pool2d: a (height, width) pair that an int
// converts to (as torch accepts `stride=2` or `stride=(2, 1)`), and torch's output-size rule.
#include <algorithm>
#include <cstdint>
#include <ostream>

#include "detr/core/error.hpp"

namespace detr {

// A per-axis size: `Size2(3)` is (3, 3), `Size2(3, 1)` is (3, 1).
struct Size2 {
  int64_t h = 0, w = 0;
  constexpr Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit, like torch's int-or-tuple
  constexpr Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  friend std::ostream& operator<<(std::ostream& os, const Size2& s) {
    return os << '(' << s.h << ", " << s.w << ')';
  }
};

namespace internal {

// floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1 (torch, ceil_mode=False); -1 when the
// dilated window does not fit in the padded input.
inline int64_t window_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  int64_t span = in + 2 * pad - dilation * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

// The outputs o in [lo, hi) whose input o * stride + off lies in [0, n): the part of a kernel
// tap's sweep that reads real input rather than padding.
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_range(int64_t off, int64_t stride, int64_t n, int64_t out) {
  int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t hi = n - off <= 0 ? 0 : std::min(out, (n - 1 - off) / stride + 1);
  lo = std::min(lo, out);
  return {lo, std::max(lo, hi)};
}

// Rejects non-positive kernels / strides / dilations and negative padding, naming the op.
inline void check_window(const char* op, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation) {
  DETR_CHECK(kernel.h > 0 && kernel.w > 0, op << ": kernel size must be positive, got " << kernel);
  DETR_CHECK(stride.h > 0 && stride.w > 0, op << ": stride must be positive, got " << stride);
  DETR_CHECK(dilation.h > 0 && dilation.w > 0, op << ": dilation must be positive, got " << dilation);
  DETR_CHECK(padding.h >= 0 && padding.w >= 0, op << ": padding must be non-negative, got " << padding);
}

}  // namespace internal
}  // namespace detr
