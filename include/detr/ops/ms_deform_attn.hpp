#pragma once
// Multi-scale deformable attention (Deformable DETR, eq. 3), the fused CPU op with its backward.
//
// out[b, q, h*D + d] = sum_{l, p} A[b, q, h, l, p] * bilinear(value_l[b, :, h, d], loc[b, q, h, l, p])
//
// Semantics are those of the reference ms_deform_attn_core_pytorch (grid_sample, align_corners
// False, zero padding, x before y); the per-sample math lives in ms_deform_attn_math.hpp, shared
// with the CUDA kernels. Unlike the reference we never build the [B, Q, H, L, P, D] samples: the
// forward accumulates each output row in place, the backward recomputes the neighbours.
// Work is split by (batch, head): a task owns the value-gradient rows of its head, so the
// backward's scatter needs no atomics and has the same bits for any thread count.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/ops/ms_deform_attn_math.hpp"

namespace detr {

namespace internal {

struct MSDeformAttnDims {
  int64_t B, S, H, D, Q, L, P;
};

// Calls f(std::integral_constant<int, D>) for the common head sizes (loops over d then unroll
// and vectorise fully), f(std::integral_constant<int, 0>) otherwise (runtime D).
template <class F>
void dispatch_head_dim(int64_t D, F&& f) {
  switch (D) {
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Both directions run one task per (batch, head). A task first copies its head's value rows
// value[b, :, h, :] (stride H * D) into a contiguous [S, D] buffer of its thread, so the
// bilinear gathers hit a compact, L2-resident block instead of rows spread over H times the
// pages; the backward likewise accumulates the value gradient in a contiguous buffer and writes
// it out once. A task owns every output it writes, so no two threads touch the same element.

// rows x D values from src (rows `src_stride` apart) to dst (rows `dst_stride` apart).
template <class T>
void copy_rows(T* dst, int64_t dst_stride, const T* src, int64_t src_stride, int64_t rows, int64_t D) {
  for (int64_t s = 0; s < rows; ++s) std::memcpy(dst + s * dst_stride, src + s * src_stride, sizeof(T) * D);
}

// A task reads (and the backward writes) the per-sample rows of one query every H * L * P
// samples: too far apart for the hardware prefetcher, so the rows a few queries on are requested
// by hand. prefetch_span requests the cache lines of x[0, count).
template <bool Write, class T>
inline void prefetch_span(const T* x, int64_t count) {
  for (int64_t k = 0; k < count; k += 64 / int64_t(sizeof(T))) __builtin_prefetch(x + k, Write ? 1 : 0);
}

// <a, b> over D in an order fixed at compile time, so the bits never change: for the dispatched
// head sizes Eigen's fully unrolled packet reduction (unaligned loads, no run-time peeling);
// otherwise 16 running lanes and a halving tree, which the compiler vectorises.
template <int DC, class T>
inline T dot_lanes(const T* a, const T* b, int64_t n) {
  if constexpr (DC > 0) {
    using Row = Eigen::Array<T, DC, 1>;
    return (Eigen::Map<const Row>(a) * Eigen::Map<const Row>(b)).sum();
  }
  constexpr int W = 16;
  const int64_t D = DC > 0 ? DC : n;
  T part[W] = {};
  int64_t d = 0;
  for (; d + W <= D; d += W)
#pragma omp simd
    for (int k = 0; k < W; ++k) part[k] += a[d + k] * b[d + k];
  for (int k = 0; k < W && d + k < D; ++k) part[k] += a[d + k] * b[d + k];  // tail of fewer than W
  for (int w = W / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) part[k] += part[k + w];
  return part[0];
}

// Where the L * P samples of query-head row bqh lie, and where their location gradients go, a
// row of 2 L P values (x, y per sample) at a time. The kernels take either policy: the
// locations given outright, or Deformable DETR's reference point plus offset over the level size.
template <class T>
struct GivenLocations {
  const T* loc;  // [B, Q, H, L, P, 2]
  T* grad_loc;   // same shape (backward)
  int64_t row;   // 2 L P
  const T* xy(int64_t bqh, T*) const { return loc + bqh * row; }
  T* grad_xy(int64_t bqh, T*) const { return grad_loc + bqh * row; }
  void store_grad(int64_t, const T*) const {}
  void prefetch(int64_t bqh) const { prefetch_span<false>(loc + bqh * row, row); }
  void prefetch_grad(int64_t bqh) const { prefetch_span<true>(grad_loc + bqh * row, row); }
};

// loc = reference[b, q, l] + offset[b, q, h, l, p] / (W_l, H_l), computed a row at a time into
// the caller's buffer as the reference's broadcast ops compute it (divide, then add: the same
// bits, vectorised). The offset gradient is the location's over (W_l, H_l); the reference
// gradient sums it over the points into grad_reference_heads [B, Q, H, L, 2], a slot per head so
// that each task writes only its own (the heads are summed afterwards, in order).
template <class T>
struct OffsetLocations {
  const T* reference;       // [B, Q, L, 2]
  const T* offset;          // [B, Q, H, L, P, 2]
  const T* normalizer;      // [L, P, 2]: (W_l, H_l) for every point
  int64_t H, L, P;
  T* grad_offset;           // [B, Q, H, L, P, 2] (backward)
  T* grad_reference_heads;  // [B, Q, H, L, 2] (backward; null when not wanted)
  const T* xy(int64_t bqh, T* buffer) const {
    const int64_t row = 2 * L * P, span = 2 * P;
    const T* off = offset + bqh * row;
    const T* ref = reference + (bqh / H) * 2 * L;
    for (int64_t l = 0; l < L; ++l) {
      const T rx = ref[2 * l], ry = ref[2 * l + 1];
#pragma omp simd
      for (int64_t k = 0; k < span; ++k)
        buffer[l * span + k] = (k % 2 ? ry : rx) + off[l * span + k] / normalizer[l * span + k];
    }
    return buffer;
  }
  T* grad_xy(int64_t, T* buffer) const { return buffer; }
  void store_grad(int64_t bqh, const T* g) const {
    const int64_t row = 2 * L * P, span = 2 * P;
    T* go = grad_offset + bqh * row;
#pragma omp simd
    for (int64_t k = 0; k < row; ++k) go[k] = g[k] / normalizer[k];
    if (!grad_reference_heads) return;
    T* gr = grad_reference_heads + bqh * 2 * L;
    for (int64_t l = 0; l < L; ++l) {
      T sx = g[l * span], sy = g[l * span + 1];
      for (int64_t p = 1; p < P; ++p) sx += g[l * span + 2 * p], sy += g[l * span + 2 * p + 1];
      gr[2 * l] = sx, gr[2 * l + 1] = sy;
    }
  }
  void prefetch(int64_t bqh) const {
    prefetch_span<false>(offset + bqh * 2 * L * P, 2 * L * P);
    prefetch_span<false>(reference + (bqh / H) * 2 * L, 2 * L);
  }
  void prefetch_grad(int64_t bqh) const { prefetch_span<true>(grad_offset + bqh * 2 * L * P, 2 * L * P); }
};

// out [B, Q, H, D]
template <int DC, class T, class Locations>
void ms_deform_attn_forward_cpu(const MSDeformAttnDims& n, const T* value, const int64_t* shapes,
                                const int64_t* starts, const Locations& locs, const T* attn, T* out) {
  const int64_t D = DC > 0 ? DC : n.D, tasks = n.B * n.H, kAhead = 8;
  parallel_for_if(n.B * n.Q * n.H * n.L * n.P * D > (int64_t(1) << 15), tasks, [&](int64_t bh0, int64_t bh1) {
    struct Tag;
    T* head = thread_scratch<Tag, 0, T>(size_t(n.S * D));  // [S, D] value rows of the task's head
    T* row_buffer = thread_scratch<Tag, 3, T>(size_t(2 * n.L * n.P));
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const int64_t b = bh / n.H, h = bh % n.H;
      copy_rows(head, D, value + (b * n.S * n.H + h) * D, n.H * D, n.S, D);
      for (int64_t q = 0; q < n.Q; ++q) {
        const int64_t bqh = (b * n.Q + q) * n.H + h;
        if (q + kAhead < n.Q) {
          const int64_t j = (bqh + kAhead * n.H) * n.L * n.P;
          locs.prefetch(bqh + kAhead * n.H);
          prefetch_span<false>(attn + j, n.L * n.P);
        }
        const T* xy = locs.xy(bqh, row_buffer);
        T* o = out + bqh * D;
        for (int64_t d = 0; d < D; ++d) o[d] = T(0);
        for (int64_t l = 0; l < n.L; ++l) {
          const int64_t Hl = shapes[2 * l], Wl = shapes[2 * l + 1];
          const T* base = head + starts[l] * D;
          for (int64_t p = 0; p < n.P; ++p) {
            const int64_t i = (bqh * n.L + l) * n.P + p, k = 2 * (l * n.P + p);
            BilinearSample<T> s;
            if (!bilinear_sample(xy[k], xy[k + 1], Hl, Wl, s)) continue;
            for (int c = 0; c < 4; ++c) {
              if (s.offset[c] < 0) continue;
              const T w = attn[i] * s.weight[c];
              const T* v = base + s.offset[c] * D;
#pragma omp simd
              for (int64_t d = 0; d < D; ++d) o[d] += w * v[d];
            }
          }
        }
      }
    }
  });
}

// grad_value [B, S, H, D] (skipped when null), the location gradients (through `locs`),
// grad_attn [B, Q, H, L, P]
template <int DC, class T, class Locations>
void ms_deform_attn_backward_cpu(const MSDeformAttnDims& n, const T* value, const int64_t* shapes,
                                 const int64_t* starts, const Locations& locs, const T* attn, const T* grad_out,
                                 T* grad_value, T* grad_attn) {
  const int64_t D = DC > 0 ? DC : n.D, tasks = n.B * n.H, kAhead = 8;
  parallel_for_if(n.B * n.Q * n.H * n.L * n.P * D > (int64_t(1) << 14), tasks, [&](int64_t bh0, int64_t bh1) {
    struct Tag;
    T* head = thread_scratch<Tag, 1, T>(size_t(n.S * D));  // [S, D] each
    T* ghead = grad_value ? thread_scratch<Tag, 2, T>(size_t(n.S * D)) : nullptr;
    T* row_buffer = thread_scratch<Tag, 4, T>(size_t(4 * n.L * n.P));  // locations, their gradients
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const int64_t b = bh / n.H, h = bh % n.H, first = (b * n.S * n.H + h) * D;
      copy_rows(head, D, value + first, n.H * D, n.S, D);
      if (ghead) std::fill_n(ghead, n.S * D, T(0));
      for (int64_t q = 0; q < n.Q; ++q) {
        const int64_t bqh = (b * n.Q + q) * n.H + h;
        if (q + kAhead < n.Q) {
          const int64_t j = (bqh + kAhead * n.H) * n.L * n.P;
          locs.prefetch(bqh + kAhead * n.H);
          prefetch_span<false>(attn + j, n.L * n.P);
          prefetch_span<false>(grad_out + (bqh + kAhead * n.H) * D, D);
          locs.prefetch_grad(bqh + kAhead * n.H);
          prefetch_span<true>(grad_attn + j, n.L * n.P);
        }
        const T* g = grad_out + bqh * D;
        const T* xy = locs.xy(bqh, row_buffer);
        T* gxy = locs.grad_xy(bqh, row_buffer + 2 * n.L * n.P);
        for (int64_t l = 0; l < n.L; ++l) {
          const int64_t Hl = shapes[2 * l], Wl = shapes[2 * l + 1];
          const T* base = head + starts[l] * D;
          T* gbase = grad_value ? ghead + starts[l] * D : nullptr;
          for (int64_t p = 0; p < n.P; ++p) {
            const int64_t i = (bqh * n.L + l) * n.P + p, k = 2 * (l * n.P + p);
            BilinearSample<T> s;
            if (!bilinear_sample(xy[k], xy[k + 1], Hl, Wl, s)) {
              grad_attn[i] = gxy[k] = gxy[k + 1] = T(0);
              continue;
            }
            T dots[4];
            for (int c = 0; c < 4; ++c) {
              dots[c] = s.offset[c] >= 0 ? dot_lanes<DC>(g, base + s.offset[c] * D, D) : T(0);
            }
            const SampleGrad<T> sg = sample_grad(s, dots, attn[i], Hl, Wl);
            grad_attn[i] = sg.attn;
            gxy[k] = sg.loc_x;
            gxy[k + 1] = sg.loc_y;
            if (!gbase) continue;
            for (int c = 0; c < 4; ++c) {
              if (s.offset[c] < 0) continue;
              const T w = attn[i] * s.weight[c];
              T* gv = gbase + s.offset[c] * D;
#pragma omp simd
              for (int64_t d = 0; d < D; ++d) gv[d] += w * g[d];
            }
          }
        }
        locs.store_grad(bqh, gxy);
      }
      if (grad_value) copy_rows(grad_value + first, n.H * D, ghead, D, n.S, D);
    }
  });
}

// Validates the inputs (naming the tensor, expected vs actual) and returns the sizes.
template <class T>
MSDeformAttnDims ms_deform_attn_dims(const Shape& value, const Tensor<int64_t>& spatial_shapes,
                                     const Tensor<int64_t>& level_start_index, const Shape& loc,
                                     const Shape& attn, const char* loc_name = "sampling_locations") {
  DETR_CHECK(value.rank() == 4, "ms_deform_attn: value must be [B, S, H, D], got " << value);
  DETR_CHECK(spatial_shapes.rank() == 2 && spatial_shapes.dim(1) == 2,
             "ms_deform_attn: spatial_shapes must be [L, 2] (H, W per level), got " << spatial_shapes.shape());
  const int64_t L = spatial_shapes.dim(0);
  DETR_CHECK(L >= 1, "ms_deform_attn: spatial_shapes has no level");
  DETR_CHECK(level_start_index.shape() == Shape{L},
             "ms_deform_attn: level_start_index must be [" << L << "] (one per level of spatial_shapes), got "
                                                           << level_start_index.shape());
  MSDeformAttnDims n{value[0], value[1], value[2], value[3], 0, L, 0};
  DETR_CHECK(loc.rank() == 6 && loc[0] == n.B && loc[2] == n.H && loc[3] == L && loc[5] == 2,
             "ms_deform_attn: " << loc_name << " must be [B, Q, H, L, P, 2] = [" << n.B << ", Q, " << n.H << ", "
                                                                                << L << ", P, 2], got " << loc);
  n.Q = loc[1];
  n.P = loc[4];
  DETR_CHECK(attn == Shape({n.B, n.Q, n.H, L, n.P}),
             "ms_deform_attn: attention_weights must be [B, Q, H, L, P] = "
                 << Shape({n.B, n.Q, n.H, L, n.P}) << ", got " << attn);
  int64_t total = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t h = spatial_shapes.data()[2 * l], w = spatial_shapes.data()[2 * l + 1];
    DETR_CHECK(h > 0 && w > 0, "ms_deform_attn: spatial_shapes level " << l << " is " << h << " x " << w
                                                                       << ", expected positive sizes");
    DETR_CHECK(level_start_index.data()[l] == total,
               "ms_deform_attn: level_start_index[" << l << "] is " << level_start_index.data()[l]
                                                    << ", expected " << total << " (sum of H*W of the levels before)");
    total += h * w;
  }
  DETR_CHECK(total == n.S, "ms_deform_attn: the levels of spatial_shapes hold " << total
                                                                                << " positions (sum of H*W), but value has S = "
                                                                                << n.S);
  return n;
}

}  // namespace internal

// value [B, S, H, D], spatial_shapes [L, 2] (H_l, W_l), level_start_index [L],
// sampling_locations [B, Q, H, L, P, 2] (x, y in [0, 1]), attention_weights [B, Q, H, L, P]
// -> [B, Q, H * D]. Differentiable in value, sampling_locations and attention_weights.
template <class T>
Var<T> ms_deform_attn(const Var<T>& value, const Tensor<int64_t>& spatial_shapes,
                      const Tensor<int64_t>& level_start_index, const Var<T>& sampling_locations,
                      const Var<T>& attention_weights) {
  const internal::MSDeformAttnDims n = internal::ms_deform_attn_dims<T>(
      value.shape(), spatial_shapes, level_start_index, sampling_locations.shape(), attention_weights.shape());
  const Tensor<T> v = value.value(), loc = sampling_locations.value(), attn = attention_weights.value();
  const Tensor<int64_t> shapes = spatial_shapes.clone(), starts = level_start_index.clone();
  auto out = Tensor<T>::empty({n.B, n.Q, n.H * n.D});
  internal::dispatch_head_dim(n.D, [&](auto dc) {
    internal::ms_deform_attn_forward_cpu<decltype(dc)::value>(n, v.data(), shapes.data(), starts.data(),
                                                              internal::GivenLocations<T>{loc.data(), nullptr, 2 * n.L * n.P},
                                                              attn.data(), out.data());
  });
  return record("ms_deform_attn", out, {value, sampling_locations, attention_weights},
                [n, v, loc, attn, shapes, starts](const Tensor<T>& g, auto& in) {
                  Tensor<T> gv = in.wants(0) ? Tensor<T>::empty(v.shape()) : Tensor<T>();
                  auto gloc = Tensor<T>::empty(loc.shape());
                  auto gattn = Tensor<T>::empty(attn.shape());
                  internal::dispatch_head_dim(n.D, [&](auto dc) {
                    internal::ms_deform_attn_backward_cpu<decltype(dc)::value>(
                        n, v.data(), shapes.data(), starts.data(), internal::GivenLocations<T>{loc.data(), gloc.data(), 2 * n.L * n.P},
                        attn.data(), g.data(), gv.defined() ? gv.data() : nullptr, gattn.data());
                  });
                  if (gv.defined()) in.add(0, std::move(gv));
                  in.add(1, std::move(gloc));
                  in.add(2, std::move(gattn));
                });
}

// ms_deform_attn sampling at reference_points[:, :, None, :, None, :] + sampling_offsets /
// (W_l, H_l): MSDeformAttn's form for 2-d reference points, with the same bits as those broadcast
// ops followed by ms_deform_attn, but the [B, Q, H, L, P, 2] locations are never built (in the
// encoder they cost two broadcast passes forward and two backward over 5.6M values per layer).
// reference_points [B, Q, L, 2], sampling_offsets [B, Q, H, L, P, 2] (in pixels of each level);
// differentiable in value, reference_points, sampling_offsets and attention_weights.
template <class T>
Var<T> ms_deform_attn_from_offsets(const Var<T>& value, const Tensor<int64_t>& spatial_shapes,
                                   const Tensor<int64_t>& level_start_index, const Var<T>& reference_points,
                                   const Var<T>& sampling_offsets, const Var<T>& attention_weights) {
  const internal::MSDeformAttnDims n = internal::ms_deform_attn_dims<T>(
      value.shape(), spatial_shapes, level_start_index, sampling_offsets.shape(), attention_weights.shape(),
      "sampling_offsets");
  DETR_CHECK(reference_points.shape() == Shape({n.B, n.Q, n.L, 2}),
             "ms_deform_attn_from_offsets: reference_points must be [B, Q, L, 2] = " << Shape({n.B, n.Q, n.L, 2})
                                                                                    << ", got " << reference_points.shape());
  const Tensor<T> v = value.value(), ref = reference_points.value(), off = sampling_offsets.value(),
                  attn = attention_weights.value();
  const Tensor<int64_t> shapes = spatial_shapes.clone(), starts = level_start_index.clone();
  auto normalizer = Tensor<T>::empty({n.L, n.P, 2});  // (W_l, H_l) for every point
  for (int64_t l = 0; l < n.L; ++l)
    for (int64_t p = 0; p < n.P; ++p) {
      normalizer.data()[2 * (l * n.P + p)] = T(shapes.data()[2 * l + 1]);
      normalizer.data()[2 * (l * n.P + p) + 1] = T(shapes.data()[2 * l]);
    }
  auto out = Tensor<T>::empty({n.B, n.Q, n.H * n.D});
  internal::dispatch_head_dim(n.D, [&](auto dc) {
    internal::ms_deform_attn_forward_cpu<decltype(dc)::value>(
        n, v.data(), shapes.data(), starts.data(),
        internal::OffsetLocations<T>{ref.data(), off.data(), normalizer.data(), n.H, n.L, n.P, nullptr, nullptr},
        attn.data(), out.data());
  });
  return record("ms_deform_attn", out, {value, reference_points, sampling_offsets, attention_weights},
                [n, v, ref, off, attn, shapes, starts, normalizer](const Tensor<T>& g, auto& in) {
                  Tensor<T> gv = in.wants(0) ? Tensor<T>::empty(v.shape()) : Tensor<T>();
                  Tensor<T> gref_heads = in.wants(1) ? Tensor<T>::empty({n.B, n.Q, n.H, n.L, 2}) : Tensor<T>();
                  auto goff = Tensor<T>::empty(off.shape());
                  auto gattn = Tensor<T>::empty(attn.shape());
                  internal::dispatch_head_dim(n.D, [&](auto dc) {
                    internal::ms_deform_attn_backward_cpu<decltype(dc)::value>(
                        n, v.data(), shapes.data(), starts.data(),
                        internal::OffsetLocations<T>{ref.data(), off.data(), normalizer.data(), n.H, n.L, n.P,
                                                     goff.data(), gref_heads.defined() ? gref_heads.data() : nullptr},
                        attn.data(), g.data(), gv.defined() ? gv.data() : nullptr, gattn.data());
                  });
                  if (gv.defined()) in.add(0, std::move(gv));
                  if (gref_heads.defined()) {  // sum the heads' slots, in head order
                    auto gref = Tensor<T>::empty({n.B, n.Q, n.L, 2});
                    const int64_t row = n.L * 2;
                    const T* src = gref_heads.data();
                    T* dst = gref.data();
                    parallel_for_if(n.B * n.Q * n.H * row > (1 << 16), n.B * n.Q, [&](int64_t bq0, int64_t bq1) {
                      for (int64_t bq = bq0; bq < bq1; ++bq) for (int64_t j = 0; j < row; ++j) {
                          T acc = src[bq * n.H * row + j];
                          for (int64_t h = 1; h < n.H; ++h) acc += src[(bq * n.H + h) * row + j];
                          dst[bq * row + j] = acc;
                        }
                    });
                    in.add(1, std::move(gref));
                  }
                  in.add(2, std::move(goff));
                  in.add(3, std::move(gattn));
                });
}

}  // namespace detr
