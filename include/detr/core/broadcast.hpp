#pragma once
// NumPy / PyTorch broadcasting: shape rules, a row-wise broadcast loop, and the reduction of a
// gradient back to an input's shape (the backward of broadcasting).

#include <algorithm>
#include <array>

#include "detr/core/cuda_tensor.hpp"
#include "detr/core/parallel.hpp"
#include "detr/core/tensor.hpp"
#include "detr/gpu/elementwise.hpp"

namespace detr::internal {

inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) {
    int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    DETR_CHECK(da == db || da == 1 || db == 1, op << ": shapes " << a << " and " << b
                                                  << " cannot be broadcast (dim " << i << ": "
                                                  << da << " vs " << db << ")");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

// Strides of `in` (contiguous) when read as `out`'s shape: 0 on broadcast dims.
inline std::array<int64_t, Shape::kMaxRank> broadcast_strides(const Shape& in, const Shape& out) {
  std::array<int64_t, Shape::kMaxRank> st{};
  auto cs = contiguous_strides(in);
  int off = out.rank() - in.rank();
  for (int i = 0; i < out.rank(); ++i) {
    int j = i - off;
    st[i] = (j < 0 || in[j] == 1) ? 0 : cs[j];
  }
  return st;
}

// A broadcast loop's geometry: the output shape and each operand's strides in it, with size-1
// dimensions dropped and adjacent dimensions merged wherever every operand walks them as one
// (contiguously, or broadcast over both), so rows get as long as the operands allow.
template <size_t N>
struct BroadcastLoop {
  int rank = 0;
  std::array<int64_t, Shape::kMaxRank> shape{};
  std::array<std::array<int64_t, Shape::kMaxRank>, N> strides{};

  BroadcastLoop(const Shape& s, const std::array<std::array<int64_t, Shape::kMaxRank>, N>& st) {
    for (int d = 0; d < s.rank(); ++d) {
      if (s[d] == 1) continue;  // adds nothing to any offset
      bool merge = rank > 0;
      for (size_t n = 0; n < N && merge; ++n) merge = strides[n][rank - 1] == st[n][d] * s[d];
      if (merge) {
        shape[rank - 1] *= s[d];
        for (size_t n = 0; n < N; ++n) strides[n][rank - 1] = st[n][d];
      } else {
        shape[rank] = s[d];
        for (size_t n = 0; n < N; ++n) strides[n][rank] = st[n][d];
        ++rank;
      }
    }
  }
  int64_t inner() const { return rank ? shape[rank - 1] : 1; }
  int64_t rows(int64_t numel) const { return numel / std::max<int64_t>(inner(), 1); }

  // f(row, offsets) for rows [begin, end) in order, offsets being each operand's offset of the
  // row's first element: one division per dimension to start, then an odometer (no division per
  // row, which dominated short rows such as the (x, y) pairs of deformable sampling locations).
  template <class F>
  void for_rows(int64_t begin, int64_t end, F&& f) const {
    if (begin >= end) return;
    const int outer = std::max(rank - 1, 0);
    std::array<int64_t, Shape::kMaxRank> idx{};
    std::array<int64_t, N> off{};
    for (int64_t r = begin, d = outer - 1; d >= 0; --d) {
      idx[d] = r % shape[d];
      r /= shape[d];
      for (size_t n = 0; n < N; ++n) off[n] += idx[d] * strides[n][d];
    }
    for (int64_t row = begin; row < end; ++row) {
      f(row, off);
      for (int d = outer - 1; d >= 0; --d) {
        for (size_t n = 0; n < N; ++n) off[n] += strides[n][d];
        if (++idx[d] < shape[d]) break;
        for (size_t n = 0; n < N; ++n) off[n] -= strides[n][d] * shape[d];
        idx[d] = 0;
      }
    }
  }
};

// The geometry of a broadcast loop for the device kernels (detr/gpu/geometry.hpp).
template <size_t N>
gpu::Strided<int(N)> strided_geometry(const BroadcastLoop<N>& loop) {
  gpu::Strided<int(N)> g;
  g.rank = loop.rank;
  for (int d = 0; d < loop.rank; ++d) {
    g.shape[d] = loop.shape[d];
    for (size_t n = 0; n < N; ++n) g.strides[n][d] = loop.strides[n][d];
  }
  return g;
}

// out[i] = f(a[i'], b[i'']) with broadcasting; out has the broadcast shape.
template <class T, class D, class F>
Tensor<T, D> broadcast_binary(const Tensor<T, D>& a, const Tensor<T, D>& b, const char* op, F f) {
  const bool same = a.shape() == b.shape();
  Shape s = same ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  auto out = Tensor<T, D>::empty(s);
  if (out.numel() == 0) return out;
  if constexpr (is_cuda<D>) {
    const BroadcastLoop<2> loop(s, {broadcast_strides(a.shape(), s), broadcast_strides(b.shape(), s)});
    gpu::binary(a.data(), b.data(), out.data(), out.numel(), strided_geometry(loop), f);
    return out;
  } else {
    if (same) {
      const T *pa = a.data(), *pb = b.data();
      T* po = out.data();
      int64_t n = out.numel();
      parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { po[i] = f(pa[i], pb[i]); });
      return out;
    }
    const BroadcastLoop<2> loop(s, {broadcast_strides(a.shape(), s), broadcast_strides(b.shape(), s)});
    const int64_t inner = loop.inner(), rows = loop.rows(out.numel());
    const int64_t ia = loop.rank ? loop.strides[0][loop.rank - 1] : 0, ib = loop.rank ? loop.strides[1][loop.rank - 1] : 0;
    const T *pa = a.data(), *pb = b.data();
    T* po = out.data();
    parallel_for_if(out.numel() > (1 << 16), rows, [&](int64_t r0, int64_t r1) {
      loop.for_rows(r0, r1, [&](int64_t row, const std::array<int64_t, 2>& off) {
        const T* ra = pa + off[0];
        const T* rb = pb + off[1];
        T* ro = po + row * inner;
        for (int64_t k = 0; k < inner; ++k) ro[k] = f(ra[k * ia], rb[k * ib]);
      });
    });
    return out;
  }
}

// Sum `g` (shape of a broadcast result) down to `target`, the shape of one broadcast input.
template <class T, class D>
Tensor<T, D> sum_to(const Tensor<T, D>& g, const Shape& target) {
  if (g.shape() == target) return g;
  const Shape& s = g.shape();
  if constexpr (is_cuda<D>) {
    auto out = Tensor<T, D>::empty(target);
    // Kept dims are those `target` has (not broadcast); their order is target's layout.
    const auto st = broadcast_strides(target, s);
    bool reduced[Shape::kMaxRank] = {};
    for (int d = 0; d < s.rank(); ++d) reduced[d] = st[d] == 0;
    gpu::reduce_sum(g.data(), out.data(), gpu::Reduction::of(s, reduced));
    return out;
  }
  auto out = Tensor<T, D>::zeros(target);
  if (g.numel() == 0) return out;
  const BroadcastLoop<1> loop(s, {broadcast_strides(target, s)});
  const int64_t inner = loop.inner(), rows = loop.rows(g.numel());
  const int64_t io = loop.rank ? loop.strides[0][loop.rank - 1] : 0;
  const T* pg = g.data();
  T* po = out.data();
  // Sequential, in row order: every output element sums its terms in a fixed order.
  loop.for_rows(0, rows, [&](int64_t row, const std::array<int64_t, 1>& off) {
    T* ro = po + off[0];
    const T* rg = pg + row * inner;
    if (io == 0) {
      T acc = 0;
      for (int64_t k = 0; k < inner; ++k) acc += rg[k];
      ro[0] += acc;
    } else {
      for (int64_t k = 0; k < inner; ++k) ro[k] += rg[k];
    }
  });
  return out;
}

}  // namespace detr::internal
