#pragma once
// NumPy / PyTorch broadcasting: shape rules, a row-wise broadcast loop, and the reduction of a
// gradient back to an input's shape (the backward of broadcasting).
#include <array>

#include "detr/core/tensor.hpp"

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

// Offset of row `row` (all dims but the last) under strides `st` for shape `out`.
inline int64_t row_offset(int64_t row, const Shape& out, const std::array<int64_t, Shape::kMaxRank>& st) {
  int64_t off = 0;
  for (int d = out.rank() - 2; d >= 0; --d) {
    int64_t i = row % out[d];
    row /= out[d];
    off += i * st[d];
  }
  return off;
}

// out[i] = f(a[i'], b[i'']) with broadcasting; out has the broadcast shape.
template <class T, class F>
Tensor<T> broadcast_binary(const Tensor<T>& a, const Tensor<T>& b, const char* op, F f) {
  if (a.shape() == b.shape()) {
    auto out = Tensor<T>::empty(a.shape());
    const T *pa = a.data(), *pb = b.data();
    T* po = out.data();
    int64_t n = out.numel();
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return out;
  }
  Shape s = broadcast_shapes(a.shape(), b.shape(), op);
  auto out = Tensor<T>::empty(s);
  if (out.numel() == 0) return out;
  auto sa = broadcast_strides(a.shape(), s), sb = broadcast_strides(b.shape(), s);
  int r = s.rank();
  int64_t inner = r ? s[r - 1] : 1, rows = out.numel() / inner;
  int64_t ia = r ? sa[r - 1] : 0, ib = r ? sb[r - 1] : 0;
  const T *pa = a.data(), *pb = b.data();
  T* po = out.data();
#pragma omp parallel for if (out.numel() > (1 << 16))
  for (int64_t row = 0; row < rows; ++row) {
    const T* ra = pa + row_offset(row, s, sa);
    const T* rb = pb + row_offset(row, s, sb);
    T* ro = po + row * inner;
    for (int64_t k = 0; k < inner; ++k) ro[k] = f(ra[k * ia], rb[k * ib]);
  }
  return out;
}

// Sum `g` (shape of a broadcast result) down to `target`, the shape of one broadcast input.
template <class T>
Tensor<T> sum_to(const Tensor<T>& g, const Shape& target) {
  if (g.shape() == target) return g;
  auto out = Tensor<T>::zeros(target);
  const Shape& s = g.shape();
  if (g.numel() == 0) return out;
  auto st = broadcast_strides(target, s);
  int r = s.rank();
  int64_t inner = r ? s[r - 1] : 1, rows = g.numel() / inner;
  int64_t io = r ? st[r - 1] : 0;
  const T* pg = g.data();
  T* po = out.data();
  for (int64_t row = 0; row < rows; ++row) {
    T* ro = po + row_offset(row, s, st);
    const T* rg = pg + row * inner;
    if (io == 0) {
      T acc = 0;
      for (int64_t k = 0; k < inner; ++k) acc += rg[k];
      ro[0] += acc;
    } else {
      for (int64_t k = 0; k < inner; ++k) ro[k] += rg[k];
    }
  }
  return out;
}

}  // namespace detr::internal
