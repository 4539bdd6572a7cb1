#pragma once
// Reductions: sum and mean over a set of dims or over everything (torch.sum / torch.mean), and
// max / argmax along one dim (torch.max(x, dim) / torch.argmax). The backward of sum and mean
// broadcasts the output gradient back over the reduced dims; max routes it to the winning index.
#include <cmath>
#include <concepts>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/broadcast.hpp"
#include "detr/ops/elementwise_math.hpp"
#include "detr/ops/strided_loops.hpp"

namespace detr {

namespace internal {

// Which dims of `s` the list `dims` names (negative dims count from the end); each at most once.
inline std::vector<bool> reduced_mask(const char* op, const Shape& s, const std::vector<int>& dims) {
  DETR_CHECK(!dims.empty(), op << ": empty dim list for x " << s << " (call " << op
                               << "(x) to reduce over every element)");
  std::vector<bool> mask(size_t(s.rank()), false);
  for (int d : dims) {
    DETR_CHECK(d >= -s.rank() && d < s.rank(),
               op << ": dim " << d << " out of range for x " << s << " (rank " << s.rank() << ")");
    int a = d < 0 ? d + s.rank() : d;
    DETR_CHECK(!mask[a], op << ": dim " << d << " appears more than once for x " << s);
    mask[a] = true;
  }
  return mask;
}

// The result shape: reduced dims become 1 (keepdim) or disappear.
inline Shape reduced_shape(const Shape& s, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (int d = 0; d < s.rank(); ++d)
    if (!mask[d]) out.push_back(s[d]);
    else if (keepdim) out.push_back(1);
  return out;
}

template <class T, class D>
Tensor<T, D> sum_tensor(const Tensor<T, D>& x, const std::vector<bool>& mask, const Shape& out_shape) {
  auto out = Tensor<T, D>::empty(out_shape);
  sum_dims_on<D>(x.data(), dims_of(x.shape()), mask, out.data());
  return out;
}

// g (one value per kept position) divided by `count` and copied over the reduced dims of
// `in_shape`.
template <class T, class D>
Tensor<T, D> broadcast_back(const Tensor<T, D>& g, const std::vector<bool>& mask, const Shape& in_shape, T count) {
  if constexpr (is_cuda<D>) {
    std::array<int64_t, Shape::kMaxRank> stride{};
    int64_t acc = 1;
    for (int d = in_shape.rank() - 1; d >= 0; --d)
      if (!mask[d]) {
        stride[d] = acc;
        acc *= in_shape[d];
      }
    auto out = Tensor<T, D>::empty(in_shape);
    const BroadcastLoop<2> loop(in_shape, {stride, stride});
    gpu::binary(g.data(), g.data(), out.data(), out.numel(), strided_geometry(loop), math::DivideFirstBy<T>{count});
    return out;
  } else {
    Tensor<T> src = g;
    if (count != T(1)) {
      src = Tensor<T>::empty(g.shape());
      src.arr() = g.arr() / count;
    }
    std::vector<int64_t> stride(size_t(in_shape.rank()), 0);
    int64_t acc = 1;
    for (int d = in_shape.rank() - 1; d >= 0; --d)
      if (!mask[d]) {
        stride[d] = acc;
        acc *= in_shape[d];
      }
    return gather_strided(src, std::move(stride), in_shape);
  }
}

template <class T, class D>
Var<T, D> reduce_sum(const char* op, const Var<T, D>& x, std::vector<bool> mask, bool keepdim, bool mean) {
  const Shape in_shape = x.shape();
  int64_t count = 1;
  for (int d = 0; d < in_shape.rank(); ++d)
    if (mask[d]) count *= in_shape[d];
  // Divided, not multiplied by 1 / count, as torch does (so the mean of no elements is 0 / 0 = nan).
  const T divisor = mean ? T(count) : T(1);
  auto out = sum_tensor(x.value(), mask, reduced_shape(in_shape, mask, keepdim));
  if (mean) {
    if constexpr (is_cuda<D>) gpu::map(out.data(), out.data(), out.numel(), math::DivideBy<T>{divisor});
    else out.arr() /= divisor;
  }
  return record(op, out, {x}, [mask = std::move(mask), in_shape, divisor](const Tensor<T, D>& g, auto& in) {
    in.add(0, broadcast_back(g, mask, in_shape, divisor));
  });
}

}  // namespace internal

// Sum over `dims` (negative dims count from the end), which are dropped unless keepdim.
template <class T, class D>
Var<T, D> sum(const Var<T, D>& x, const std::vector<int>& dims, bool keepdim = false) {
  return internal::reduce_sum("sum", x, internal::reduced_mask("sum", x.shape(), dims), keepdim, false);
}
// One dim. A template so that a braced list (even `{}`) always means the list overload.
template <class T, class D, std::integral I>
Var<T, D> sum(const Var<T, D>& x, I dim, bool keepdim = false) {
  return sum(x, std::vector<int>{int(dim)}, keepdim);
}
// Sum of every element: a scalar of shape [].
template <class T, class D>
Var<T, D> sum(const Var<T, D>& x) {
  return internal::reduce_sum("sum", x, std::vector<bool>(size_t(x.rank()), true), false, false);
}

// Mean over `dims`; the mean of zero elements is nan, as in torch.
template <class T, class D>
Var<T, D> mean(const Var<T, D>& x, const std::vector<int>& dims, bool keepdim = false) {
  return internal::reduce_sum("mean", x, internal::reduced_mask("mean", x.shape(), dims), keepdim, true);
}
// One dim. A template so that a braced list (even `{}`) always means the list overload.
template <class T, class D, std::integral I>
Var<T, D> mean(const Var<T, D>& x, I dim, bool keepdim = false) {
  return mean(x, std::vector<int>{int(dim)}, keepdim);
}
template <class T, class D>
Var<T, D> mean(const Var<T, D>& x) {
  return internal::reduce_sum("mean", x, std::vector<bool>(size_t(x.rank()), true), false, true);
}

// Values and positions of the maxima along one dim (torch.max(x, dim)).
template <class T>
struct MaxResult {
  Var<T> values;            // x's shape without `dim` (kept as 1 with keepdim)
  Tensor<int64_t> indices;  // same shape as values; not differentiable
};

namespace internal {

// Along dim of x viewed as [outer, n, inner]: the first maximum, where nan beats every number
// (torch.max propagates nan); the first of equal maxima wins.
template <class T>
void max_along(const Tensor<T>& x, int dim, T* values, int64_t* indices) {
  const Shape& s = x.shape();
  const int64_t outer = s.prod(0, dim), n = s[dim], inner = s.prod(dim + 1, s.rank());
  const T* px = x.data();
  parallel_for_if(x.numel() > kParallelWork && outer > 1, outer, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const T* base = px + o * n * inner;
      T* v = values + o * inner;
      int64_t* ix = indices + o * inner;
      if (inner == 1) {  // a contiguous row: a vectorised max, then the first position holding it
        T best = base[0];
        int nans = 0;
#pragma omp simd reduction(max : best) reduction(+ : nans)
        for (int64_t j = 0; j < n; ++j) {
          best = base[j] > best ? base[j] : best;
          nans += base[j] != base[j];
        }
        int64_t at = 0;
        if (nans) {
          while (!std::isnan(base[at])) ++at;
        } else {
          while (base[at] != best) ++at;
        }
        *v = base[at];
        *ix = at;
        continue;
      }
      std::copy(base, base + inner, v);
      std::fill_n(ix, inner, 0);
      for (int64_t j = 1; j < n; ++j) {
        const T* row = base + j * inner;
        for (int64_t i = 0; i < inner; ++i) {
          const bool better = row[i] > v[i] || (std::isnan(row[i]) && !std::isnan(v[i]));
          v[i] = better ? row[i] : v[i];
          ix[i] = better ? j : ix[i];
        }
      }
    }
  });
}

}  // namespace internal

// Maximum along `dim` and its index (the first one among ties; nan counts as the maximum).
// The gradient flows to the selected element only.
template <class T>
MaxResult<T> max(const Var<T>& x, int dim, bool keepdim = false) {
  const Shape s = x.shape();
  DETR_CHECK(dim >= -s.rank() && dim < s.rank(), "max: dim " << dim << " out of range for x " << s);
  const int d = dim < 0 ? dim + s.rank() : dim;
  DETR_CHECK(s[d] > 0, "max: cannot reduce dim " << dim << " of size 0 of x " << s);
  std::vector<bool> mask(size_t(s.rank()), false);
  mask[d] = true;
  const Shape out_shape = internal::reduced_shape(s, mask, keepdim);
  auto values = Tensor<T>::empty(out_shape);
  auto indices = Tensor<int64_t>::empty(out_shape);
  internal::max_along(x.value(), d, values.data(), indices.data());
  auto v = record("max", values, {x}, [indices, s, d](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::zeros(s);
    const int64_t outer = s.prod(0, d), n = s[d], inner = s.prod(d + 1, s.rank());
    const T* pg = g.data();
    const int64_t* pi = indices.data();
    T* po = gx.data();
    parallel_for_if(gx.numel() > internal::kParallelWork && outer > 1, outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) for (int64_t i = 0; i < inner; ++i) po[(o * n + pi[o * inner + i]) * inner + i] = pg[o * inner + i];
    });
    in.add(0, std::move(gx));
  });
  return {v, indices};
}

// Index of the first maximum along `dim` (torch.argmax); no gradient.
template <class T>
Tensor<int64_t> argmax(const Var<T>& x, int dim, bool keepdim = false) {
  NoGrad no_grad;
  return max(x, dim, keepdim).indices;
}

}  // namespace detr
