#pragma once
// Per-sample math of multi-scale deformable attention, written once for the CPU op
// (ops/ms_deform_attn.hpp) and the CUDA kernels (kernels/ms_deform_attn.cuh).
//
// The reference (ms_deform_attn_core_pytorch) samples each level with
// F.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False) on the grid
// 2 * loc - 1, so a location (x, y) in [0, 1] (x before y) lands on the pixel coordinate
// (x * W - 0.5, y * H - 0.5); the four neighbouring pixels are blended bilinearly and every
// neighbour outside the map contributes zero (to the value and to the location gradient alike).
#include <cmath>
#include <cstdint>

#include "detr/core/device.hpp"

namespace detr::internal {

// The four neighbours of one sample, in the order (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1).
// A neighbour outside the map has offset -1 and zero weight and weight derivatives.
template <class A>
struct BilinearSample {
  int64_t offset[4];  // y * W + x of the neighbour within its level
  A weight[4];        // bilinear weight
  A dweight_dx[4];    // d weight / d pixel x
  A dweight_dy[4];    // d weight / d pixel y
};

template <class A>
DETR_HD inline A floor_of(A v) {
#if defined(__CUDA_ARCH__)
  return floor(v);
#else
  return std::floor(v);
#endif
}

// Fills `s` for the location (loc_x, loc_y) on an H x W level. Returns false when no neighbour
// lies in the map (or the location is NaN): the sample then adds nothing and gets a zero
// gradient, as grid_sample gives. A pixel coordinate of exactly -1 still counts: its (zero-weight)
// neighbour at 0 carries a gradient in grid_sample, and here too.
template <class A>
DETR_HD inline bool bilinear_sample(A loc_x, A loc_y, int64_t H, int64_t W, BilinearSample<A>& s) {
  const A px = loc_x * A(W) - A(0.5), py = loc_y * A(H) - A(0.5);
  if (!(px >= A(-1) && px < A(W) && py >= A(-1) && py < A(H))) return false;
  const A fx = floor_of(px), fy = floor_of(py);
  const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
  const A lx = px - fx, ly = py - fy;
  for (int c = 0; c < 4; ++c) {
    const int dy = c >> 1, dx = c & 1;
    const int64_t x = x0 + dx, y = y0 + dy;
    const bool inside = x >= 0 && x < W && y >= 0 && y < H;
    const A wx = dx ? lx : A(1) - lx, wy = dy ? ly : A(1) - ly;
    s.offset[c] = inside ? y * W + x : -1;
    s.weight[c] = inside ? wx * wy : A(0);
    s.dweight_dx[c] = inside ? (dx ? wy : -wy) : A(0);
    s.dweight_dy[c] = inside ? (dy ? wx : -wx) : A(0);
  }
  return true;
}

// Gradients of one sample given dots[c] = <grad_out row, value row of neighbour c> (0 for a
// neighbour outside): d out / d attention weight, and d out / d location (x, y) for weight `a`.
template <class A>
struct SampleGrad {
  A attn, loc_x, loc_y;
};
template <class A>
DETR_HD inline SampleGrad<A> sample_grad(const BilinearSample<A>& s, const A dots[4], A a, int64_t H, int64_t W) {
  A ga = 0, gx = 0, gy = 0;
  for (int c = 0; c < 4; ++c) {
    ga += s.weight[c] * dots[c];
    gx += s.dweight_dx[c] * dots[c];
    gy += s.dweight_dy[c] * dots[c];
  }
  // d px / d loc_x = W, d py / d loc_y = H.
  return {ga, a * gx * A(W), a * gy * A(H)};
}

}  // namespace detr::internal
