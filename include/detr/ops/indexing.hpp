#pragma once
// Indexing ops: gather (torch.gather), index_select, masked_fill, topk and embedding
// (torch.nn.functional.embedding). Index tensors are Tensor<int64_t> and masks Tensor<uint8_t>;
// neither is differentiable. Every index is validated before any work: an index out of range
// is a detr::Error naming the op, the offending value, its position and the valid range.
//
// Backward passes that add into the same input element (gather, index_select and embedding with
// repeated indices) accumulate each element's contributions in a fixed order within one thread,
// so their results are the same bits on every run and for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/broadcast.hpp"
#include "detr/ops/strided_loops.hpp"

namespace detr {

namespace internal {

inline int checked_dim(const char* op, int dim, const Shape& s) {
  DETR_CHECK(dim >= -s.rank() && dim < s.rank(),
             op << ": dim " << dim << " out of range for x " << s << " (rank " << s.rank() << ")");
  return dim < 0 ? dim + s.rank() : dim;
}

// Every entry of `index` lies in [0, n).
inline void check_indices(const char* op, const Tensor<int64_t>& index, int64_t n, const char* what) {
  const int64_t* p = index.data();
  const int64_t count = index.numel();
  int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < count; ++i) bad += p[i] < 0 || p[i] >= n;
  if (!bad) return;
  for (int64_t i = 0; i < count; ++i)
    DETR_CHECK(p[i] >= 0 && p[i] < n, op << ": index " << p[i] << " at position " << i << " of index "
                                         << index.shape() << " is out of range for " << what << " "
                                         << n << " (valid: 0.." << n - 1 << ")");
}

// Layout of gather: index viewed as [outer, k, inner] around dim, with the x offset of each
// outer and inner position (index may be smaller than x along dims other than dim).
struct GatherPlan {
  int64_t outer, k, inner, x_dim_stride;
  std::vector<int64_t> outer_off, inner_off;

  GatherPlan(const Shape& x, const Shape& index, int dim) {
    const auto xs = contiguous_strides(x);
    outer = index.prod(0, dim);
    k = index[dim];
    inner = index.prod(dim + 1, index.rank());
    x_dim_stride = xs[dim];
    outer_off = offsets(index, xs, 0, dim);
    inner_off = offsets(index, xs, dim + 1, index.rank());
  }

 private:
  // x offsets of every position of index dims [from, to), in row-major order.
  static std::vector<int64_t> offsets(const Shape& index, const std::array<int64_t, Shape::kMaxRank>& xs,
                                      int from, int to) {
    std::vector<int64_t> off(size_t(index.prod(from, to)), 0);
    int64_t span = 1;
    for (int d = to - 1; d >= from; --d) {
      for (size_t i = 0; i < off.size(); ++i) off[i] += int64_t(i) / span % index[d] * xs[d];
      span *= index[d];
    }
    return off;
  }
};

// dst = mask ? value : src over `shape` (src and dst contiguous), reading the mask through
// broadcast strides: an attention mask [B, 1, 1, S] is never expanded to the scores' size.
template <class T>
void select_masked(const T* src, const Tensor<uint8_t>& mask, const Shape& shape, T value, T* dst) {
  auto ms = broadcast_strides(mask.shape(), shape);
  LoopNest<2> in{dims_of(shape), {std::vector<int64_t>(ms.begin(), ms.begin() + shape.rank()),
                                  detr::internal::contiguous_strides(dims_of(shape))}};
  if (in.numel() == 0) return;
  const LoopNest<2> nest = coalesce(in);
  const int64_t n = nest.size.back(), step = nest.stride[0].back();
  const uint8_t* pm = mask.data();
  for_each_row(nest, [&](const Odometer<2>& od) {
    const uint8_t* m = pm + od[0];
    const T* s = src + od[1];
    T* d = dst + od[1];
    if (step == 0) {
      if (*m) std::fill_n(d, n, value);
      else std::memcpy(d, s, sizeof(T) * size_t(n));
    } else {
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) d[k] = m[k * step] ? value : s[k];
    }
  });
}

}  // namespace internal

// out[..., j, ...] = x[..., index[..., j, ...], ...] along `dim` (torch.gather): index has x's
// rank, is no larger than x in the other dims, and gives the output shape.
template <class T>
Var<T> gather(const Var<T>& x,                  // [d0, ..., N, ...]
              int dim,                          // the dim of N
              const Tensor<int64_t>& index) {  // [e0 <= d0, ..., K, ...], values in [0, N)
  const Shape& xs = x.shape();
  DETR_CHECK(index.rank() == x.rank(),
             "gather: index " << index.shape() << " must have the rank of x " << xs);
  const int d = internal::checked_dim("gather", dim, xs);
  for (int i = 0; i < xs.rank(); ++i)
    DETR_CHECK(i == d || index.shape()[i] <= xs[i], "gather: index " << index.shape() << " is larger than x "
                                                                     << xs << " in dim " << i);
  internal::check_indices("gather", index, xs[d], "x.shape[dim] =");
  auto plan = std::make_shared<internal::GatherPlan>(xs, index.shape(), d);
  auto out = Tensor<T>::empty(index.shape());
  {
    const T* px = x.value().data();
    const int64_t* pi = index.data();
    T* po = out.data();
    const auto& p = *plan;
    parallel_for_if(out.numel() > internal::kParallelWork && p.outer > 1, p.outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const T* base = px + p.outer_off[o];
        if (p.inner == 1) {  // gather along the last dim: one row of x per outer position
          for (int64_t j = 0; j < p.k; ++j) po[o * p.k + j] = base[pi[o * p.k + j] * p.x_dim_stride];
          continue;
        }
        for (int64_t j = 0; j < p.k; ++j) {
          const int64_t row = (o * p.k + j) * p.inner;
          for (int64_t i = 0; i < p.inner; ++i) po[row + i] = base[pi[row + i] * p.x_dim_stride + p.inner_off[i]];
        }
      }
    });
  }
  return record("gather", out, {x}, [index, plan, xs](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::zeros(xs);
    const T* pg = g.data();
    const int64_t* pi = index.data();
    T* po = gx.data();
    const auto& p = *plan;
    // Different outer positions write disjoint parts of gx; each is accumulated in order.
    parallel_for_if(g.numel() > internal::kParallelWork && p.outer > 1, p.outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) for (int64_t j = 0; j < p.k; ++j) {
          const int64_t row = (o * p.k + j) * p.inner;
          T* base = po + p.outer_off[o];
          for (int64_t i = 0; i < p.inner; ++i) base[pi[row + i] * p.x_dim_stride + p.inner_off[i]] += pg[row + i];
        }
    });
    in.add(0, std::move(gx));
  });
}

namespace internal {

// x viewed as [outer, n, inner]: out[o, j, :] = x[o, index[j], :].
template <class T>
Tensor<T> index_rows(const Tensor<T>& x, int dim, const Tensor<int64_t>& index, const Shape& out_shape) {
  const Shape& s = x.shape();
  const int64_t outer = s.prod(0, dim), n = s[dim], inner = s.prod(dim + 1, s.rank()), k = index.numel();
  auto out = Tensor<T>::empty(out_shape);
  const T* px = x.data();
  const int64_t* pi = index.data();
  T* po = out.data();
  parallel_for_if(out.numel() > kParallelWork, outer * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / k, j = r % k;
      std::memcpy(po + r * inner, px + (o * n + pi[j]) * inner, sizeof(T) * size_t(inner));
    }
  });
  return out;
}

// Backward of index_rows: gx[o, index[j], :] += g[o, j, :]. Each destination row adds its
// contributions in j order, whichever unit owns it, so the bits never depend on the split. With
// few outer positions (embedding: one) the destination rows are split into blocks, and each
// block's unit scans the whole index list for its own rows.
template <class T>
Tensor<T> index_rows_backward(const Tensor<T>& g, int dim, const Tensor<int64_t>& index, const Shape& in_shape) {
  const int64_t outer = in_shape.prod(0, dim), n = in_shape[dim], inner = in_shape.prod(dim + 1, in_shape.rank()),
                k = index.numel();
  auto gx = Tensor<T>::zeros(in_shape);
  const int64_t blocks = outer >= 8 ? 1 : std::min<int64_t>(n, 16), rows_per_block = (n + blocks - 1) / blocks;
  const T* pg = g.data();
  const int64_t* pi = index.data();
  T* po = gx.data();
  parallel_for_if(g.numel() > kParallelWork && outer * blocks > 1, outer * blocks, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t o = u / blocks, lo = u % blocks * rows_per_block, hi = std::min(n, lo + rows_per_block);
      for (int64_t j = 0; j < k; ++j) {
        if (pi[j] < lo || pi[j] >= hi) continue;
        const T* src = pg + (o * k + j) * inner;
        T* dst = po + (o * n + pi[j]) * inner;
#pragma omp simd
        for (int64_t c = 0; c < inner; ++c) dst[c] += src[c];
      }
    }
  });
  return gx;
}

}  // namespace internal

// Entries of x at positions `index` (1-d, repeats allowed) along `dim` (torch.index_select).
template <class T>
Var<T> index_select(const Var<T>& x,                  // [..., N, ...] -> out [..., K, ...]
                    int dim,                          // the dim of N
                    const Tensor<int64_t>& index) {  // [K], values in [0, N)
  const Shape xs = x.shape();
  const int d = internal::checked_dim("index_select", dim, xs);
  DETR_CHECK(index.rank() <= 1, "index_select: index must be 1-d, got " << index.shape());
  internal::check_indices("index_select", index, xs[d], "x.shape[dim] =");
  Shape os = xs;
  os[d] = index.numel();
  auto out = internal::index_rows(x.value(), d, index, os);
  return record("index_select", out, {x}, [index, d, xs](const Tensor<T>& g, auto& in) {
    in.add(0, internal::index_rows_backward(g, d, index, xs));
  });
}

// Rows of `weight` [N, D] picked by `index` (any shape): out is [*index.shape, D]
// (torch.nn.functional.embedding, dense gradient).
template <class T>
Var<T> embedding(const Var<T>& weight,              // [N, D]
                 const Tensor<int64_t>& index) {  // [*I], values in [0, N) -> out [*I, D]
  const Shape ws = weight.shape();
  DETR_CHECK(ws.rank() == 2, "embedding: weight must be [N, D], got " << ws);
  internal::check_indices("embedding", index, ws[0], "weight with N =");
  Shape os = index.shape();
  os.push_back(ws[1]);
  auto flat = index.reshape(Shape{index.numel()});
  auto out = internal::index_rows(weight.value(), 0, flat, Shape{index.numel(), ws[1]}).reshape(os);
  return record("embedding", out, {weight}, [flat, ws](const Tensor<T>& g, auto& in) {
    in.add(0, internal::index_rows_backward(g.reshape(Shape{flat.numel(), ws[1]}), 0, flat, ws));
  });
}

// x with `value` wherever `mask` (broadcastable to x) is nonzero; no gradient flows to the
// filled positions (torch.masked_fill).
template <class T>
Var<T> masked_fill(const Var<T>& x,               // [*S]
                   const Tensor<uint8_t>& mask,  // broadcastable to [*S]
                   std::type_identity_t<T> value) {
  const Shape& xs = x.shape();
  DETR_CHECK(internal::broadcast_shapes(mask.shape(), xs, "masked_fill") == xs,
             "masked_fill: mask " << mask.shape() << " does not broadcast to x " << xs);
  auto out = Tensor<T>::empty(xs);
  internal::select_masked(x.value().data(), mask, xs, value, out.data());
  return record("masked_fill", out, {x}, [mask, xs](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::empty(xs);
    internal::select_masked(g.data(), mask, xs, T(0), gx.data());
    in.add(0, std::move(gx));
  });
}

template <class T>
struct TopK {
  Var<T> values;            // x's shape with dim of size k, sorted
  Tensor<int64_t> indices;  // positions of the values along dim; not differentiable
};

// The k largest (or smallest) entries along `dim`, sorted, with their indices (torch.topk).
// nan counts as larger than every number. Equal values come in the order torch 1.13's CPU kernel
// leaves them: it runs libstdc++'s partial_sort (k * 64 <= n) or nth_element + sort on (value,
// index) pairs comparing values only, so ties are not in index order; running the same
// algorithms with the same comparison reproduces its indices exactly (and deterministically).
template <class T>
TopK<T> topk(const Var<T>& x,  // [..., N, ...] -> values and indices [..., k, ...]
             int64_t k, int dim = -1, bool largest = true) {
  const Shape xs = x.shape();
  const int d = internal::checked_dim("topk", dim, xs);
  DETR_CHECK(k >= 0 && k <= xs[d], "topk: k = " << k << " out of range for dim " << dim << " of size "
                                                << xs[d] << " of x " << xs);
  const int64_t outer = xs.prod(0, d), n = xs[d], inner = xs.prod(d + 1, xs.rank());
  Shape os = xs;
  os[d] = k;
  auto values = Tensor<T>::empty(os);
  auto indices = Tensor<int64_t>::empty(os);
  const T* px = x.value().data();
  T* pv = values.data();
  int64_t* pi = indices.data();
  using Elem = std::pair<T, int64_t>;
  auto greater = [](const Elem& a, const Elem& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
  };
  auto less = [](const Elem& a, const Elem& b) {
    return (!std::isnan(a.first) && std::isnan(b.first)) || a.first < b.first;
  };
  auto select = [k](std::vector<Elem>& q, auto cmp) {
    if (k * 64 <= int64_t(q.size())) {
      std::partial_sort(q.begin(), q.begin() + k, q.end(), cmp);
    } else {
      std::nth_element(q.begin(), q.begin() + k - 1, q.end(), cmp);
      std::sort(q.begin(), q.begin() + k - 1, cmp);
    }
  };
  if (k > 0) {
    parallel_for_if(x.numel() > internal::kParallelWork && outer * inner > 1, outer * inner, [&](int64_t r0, int64_t r1) {
      std::vector<Elem> queue(static_cast<size_t>(n));  // per-thread scratch, reused for every row
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r / inner, i = r % inner;
        const T* v = px + o * n * inner + i;
        for (int64_t j = 0; j < n; ++j) queue[j] = {v[j * inner], j};
        if (largest) select(queue, greater);
        else select(queue, less);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t at = (o * k + j) * inner + i;
          pv[at] = queue[j].first;
          pi[at] = queue[j].second;
        }
      }
    });
  }
  auto out = record("topk", values, {x}, [indices, xs, d](const Tensor<T>& g, auto& in) {
    auto gx = Tensor<T>::zeros(xs);
    const int64_t n = xs[d], inner = xs.prod(d + 1, xs.rank()), k = g.shape()[d], outer = xs.prod(0, d);
    const T* pg = g.data();
    const int64_t* pi = indices.data();
    T* po = gx.data();
    // Indices within a row are distinct: plain stores, no accumulation.
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t at = (o * k + j) * inner + i;
          po[(o * n + pi[at]) * inner + i] = pg[at];
        }
    in.add(0, std::move(gx));
  });
  return {out, indices};
}

}  // namespace detr
