#pragma once
// Layout ops: reshape (a view), permute and transpose (copies, since tensors are contiguous);
// concat, split, slice, expand, repeat, unsqueeze and squeeze with torch's semantics.
#include <array>
#include <cstring>
#include <numeric>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/ops/strided_loops.hpp"

namespace detr {

// View with a new shape (one dim may be -1); the gradient is reshaped back.
template <class T, class D>
Var<T, D> reshape(const Var<T, D>& x, std::initializer_list<int64_t> dims) {
  return reshape(x, x.value().reshape(dims).shape());
}
template <class T, class D>
Var<T, D> reshape(const Var<T, D>& x, const Shape& s) {
  auto out = x.value().reshape(s);
  return record("reshape", out, {x}, [in_shape = x.shape()](const Tensor<T, D>& g, auto& in) {
    in.add(0, g.reshape(in_shape));
  });
}

namespace internal {
// out = x with dims reordered: out.shape[i] = x.shape[perm[i]].
template <class T, class D>
Tensor<T, D> permute_copy(const Tensor<T, D>& x, const std::vector<int>& perm) {
  const Shape& s = x.shape();
  const int r = s.rank();
  Shape os;
  for (int i = 0; i < r; ++i) os.push_back(s[perm[i]]);
  auto xs = contiguous_strides(s);
  std::array<int64_t, Shape::kMaxRank> st{};  // input stride of each output dim
  for (int i = 0; i < r; ++i) st[i] = xs[perm[i]];
  if constexpr (is_cuda<D>) {
    return gather_strided(x, std::vector<int64_t>(st.begin(), st.begin() + r), os);
  } else {
    auto out = Tensor<T>::empty(os);
    if (out.numel() == 0) return out;
    // Innermost output dim copied as a run; when it is also innermost in x the run is contiguous.
    const int64_t inner = os[r - 1], rows = out.numel() / inner, sin = st[r - 1];
    const T* px = x.data();
    T* po = out.data();
    parallel_for_if(out.numel() > (1 << 16), rows, [&](int64_t row0, int64_t row1) {
      for (int64_t row = row0; row < row1; ++row) {
        int64_t off = 0, rem = row;
        for (int d = r - 2; d >= 0; --d) {
          off += (rem % os[d]) * st[d];
          rem /= os[d];
        }
        const T* src = px + off;
        T* dst = po + row * inner;
        if (sin == 1) std::copy(src, src + inner, dst);
        else
          for (int64_t k = 0; k < inner; ++k) dst[k] = src[k * sin];
      }
    });
    return out;
  }
}

inline std::vector<int> check_perm(std::vector<int> perm, const Shape& s) {
  DETR_CHECK(int(perm.size()) == s.rank(), "permute: " << perm.size() << " dims given for shape " << s);
  std::vector<bool> seen(perm.size(), false);
  for (int& p : perm) {
    p = s.axis(p);
    DETR_CHECK(!seen[p], "permute: dimension " << p << " repeated for shape " << s);
    seen[p] = true;
  }
  return perm;
}
}  // namespace internal

// Reorders dims: out.shape[i] = x.shape[perm[i]] (torch.permute).
template <class T, class D>
Var<T, D> permute(const Var<T, D>& x, std::vector<int> perm) {
  perm = internal::check_perm(std::move(perm), x.shape());
  std::vector<int> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = int(i);
  auto out = internal::permute_copy(x.value(), perm);
  return record("permute", out, {x}, [inverse](const Tensor<T, D>& g, auto& in) {
    in.add(0, internal::permute_copy(g, inverse));
  });
}

// Swaps two dims (torch.transpose).
template <class T, class D>
Var<T, D> transpose(const Var<T, D>& x, int d0, int d1) {
  std::vector<int> perm(x.rank());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[x.shape().axis(d0)], perm[x.shape().axis(d1)]);
  return permute(x, perm);
}

namespace internal {

inline int shape_dim(const char* op, int dim, const Shape& s) {
  DETR_CHECK(dim >= -s.rank() && dim < s.rank(),
             op << ": dim " << dim << " out of range for x " << s << " (rank " << s.rank() << ")");
  return dim < 0 ? dim + s.rank() : dim;
}

inline std::vector<int64_t> strides_of(const Shape& s) {
  auto st = contiguous_strides(s);
  return std::vector<int64_t>(st.begin(), st.begin() + s.rank());
}

}  // namespace internal

// Joins tensors along `dim`; all other dims must match (torch.cat).
template <class T, class D = cpu>
Var<T, D> concat(const std::vector<Var<T, D>>& xs, int dim) {
  DETR_CHECK(!xs.empty(), "concat: no tensors given");
  const Shape& s0 = xs[0].shape();
  const int d = internal::shape_dim("concat", dim, s0);
  Shape os = s0;
  os[d] = 0;
  for (size_t j = 0; j < xs.size(); ++j) {
    const Shape& s = xs[j].shape();
    bool same = s.rank() == s0.rank();
    for (int i = 0; same && i < s.rank(); ++i) same = i == d || s[i] == s0[i];
    DETR_CHECK(same, "concat: tensor " << j << " has shape " << s << " but tensor 0 has " << s0
                                       << " (only dim " << dim << " may differ)");
    os[d] += s[d];
  }
  auto out = Tensor<T, D>::empty(os);
  const auto ost = internal::strides_of(os);
  std::vector<int64_t> begins, lens;  // per input: first index along dim, elements per outer row
  std::vector<const T*> src;
  int64_t at = 0;
  for (const auto& x : xs) {
    begins.push_back(at);
    lens.push_back(x.shape()[d] * ost[d]);
    src.push_back(x.value().data());
    at += x.shape()[d];
  }
  if constexpr (is_cuda<D>) {  // each input copied into its place
    for (size_t j = 0; j < xs.size(); ++j)
      internal::strided_copy_on<D>(src[j], internal::strides_of(xs[j].shape()), out.data() + begins[j] * ost[d], ost,
                                   internal::dims_of(xs[j].shape()));
  } else {
    // Output rows (one per position before dim) are written front to back, one piece per input.
    const int64_t outer = os.prod(0, d), row = os[d] * ost[d];
    T* po = out.data();
    parallel_for_if(out.numel() > internal::kParallelWork && outer > 1, outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) for (size_t j = 0; j < src.size(); ++j)
          std::memcpy(po + o * row + begins[j] * ost[d], src[j] + o * lens[j], sizeof(T) * size_t(lens[j]));
    });
  }
  std::vector<Shape> shapes;
  for (const auto& x : xs) shapes.push_back(x.shape());
  return record("concat", out, xs, [shapes, begins, ost, d](const Tensor<T, D>& g, auto& in) {
    for (size_t j = 0; j < shapes.size(); ++j)
      if (in.wants(j)) in.add(j, internal::gather_strided(g, ost, shapes[j], begins[j] * ost[d]));
  });
}

// Entries begin, begin + step, ... (< end) along `dim`, Python-style: negative bounds count from
// the end and bounds are clamped to the dim (x[..., begin:end:step, ...]); step must be positive.
// A step-1 slice that is contiguous in memory is a view.
template <class T, class D>
Var<T, D> slice(const Var<T, D>& x, int dim, int64_t begin, int64_t end, int64_t step = 1) {
  const Shape xs = x.shape();
  const int d = internal::shape_dim("slice", dim, xs);
  DETR_CHECK(step > 0, "slice: step must be positive, got " << step << " for x " << xs);
  const int64_t n = xs[d];
  auto clamp = [n](int64_t i) { return std::min(std::max(i < 0 ? i + n : i, int64_t(0)), n); };
  begin = clamp(begin);
  end = std::max(clamp(end), begin);
  Shape os = xs;
  os[d] = (end - begin + step - 1) / step;
  auto st = internal::strides_of(xs);
  const int64_t offset = begin * st[d];
  st[d] *= step;
  Tensor<T, D> out;
  if (step == 1 && xs.prod(0, d) == 1) {
    out = x.value().reshape(Shape{n, xs.prod(d + 1, xs.rank())}).slice0(begin, end).reshape(os);
  } else {
    out = internal::gather_strided(x.value(), st, os, offset);
  }
  return record("slice", out, {x}, [xs, st, offset](const Tensor<T, D>& g, auto& in) {
    auto gx = Tensor<T, D>::zeros(xs);
    internal::strided_copy_on<D>(g.data(), internal::strides_of(g.shape()), gx.data() + offset, st,
                                 internal::dims_of(g.shape()));
    in.add(0, std::move(gx));
  });
}

// concat({a, b, c}, dim) without spelling out T.
template <class T, class D = cpu>
Var<T, D> concat(std::initializer_list<Var<T, D>> xs, int dim) {
  return concat(std::vector<Var<T, D>>(xs), dim);
}

// Consecutive pieces of the given sizes along `dim` (torch.split with a list of sizes). Each piece
// is a slice, so each piece that receives a gradient adds one x-sized tensor in backward.
template <class T, class D>
std::vector<Var<T, D>> split(const Var<T, D>& x, const std::vector<int64_t>& sizes, int dim) {
  const int d = internal::shape_dim("split", dim, x.shape());
  int64_t total = 0;
  for (int64_t s : sizes) {
    DETR_CHECK(s >= 0, "split: negative size " << s << " for x " << x.shape());
    total += s;
  }
  DETR_CHECK(total == x.shape()[d], "split: sizes add up to " << total << " but dim " << dim << " of x "
                                                              << x.shape() << " is " << x.shape()[d]);
  std::vector<Var<T, D>> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(slice(x, d, at, at + s));
    at += s;
  }
  return out;
}

// x broadcast to `shape` (torch.Tensor.expand): -1 keeps a dim, new dims are added in front,
// only size-1 dims grow. The result is a copy; its gradient is summed back over the copies.
template <class T, class D>
Var<T, D> expand(const Var<T, D>& x, std::vector<int64_t> shape) {
  const Shape xs = x.shape();
  const int r = int(shape.size()), lead = r - xs.rank();
  DETR_CHECK(lead >= 0, "expand: target has " << r << " dims, fewer than x " << xs);
  std::vector<bool> grown(size_t(r), false);
  for (int i = 0; i < r; ++i) {
    const int j = i - lead;
    if (shape[i] == -1) {
      DETR_CHECK(j >= 0, "expand: -1 is not allowed in the new leading dim " << i << " (x " << xs << ")");
      shape[i] = xs[j];
    }
    DETR_CHECK(shape[i] >= 0, "expand: invalid size " << shape[i] << " in dim " << i);
    DETR_CHECK(j < 0 || xs[j] == shape[i] || xs[j] == 1, "expand: x " << xs << " cannot grow dim " << j
                                                                      << " from " << xs[j] << " to " << shape[i]);
    grown[i] = j < 0 || (xs[j] == 1 && shape[i] != 1);
  }
  const Shape os(std::span<const int64_t>(shape.data(), shape.size()));
  if (os.numel() == xs.numel()) return reshape(x, os);  // nothing grows: a view, as in torch
  std::vector<int64_t> st(size_t(r), 0);
  const auto xst = internal::strides_of(xs);
  for (int i = lead; i < r; ++i)
    if (!grown[i]) st[i] = xst[i - lead];
  auto out = internal::gather_strided(x.value(), st, os);
  return record("expand", out, {x}, [grown, xs](const Tensor<T, D>& g, auto& in) {
    auto gx = Tensor<T, D>::empty(xs);
    internal::sum_dims_on<D>(g.data(), internal::dims_of(g.shape()), grown, gx.data());
    in.add(0, std::move(gx));
  });
}

// x tiled `repeats[i]` times along each dim (torch.Tensor.repeat); extra repeats add leading
// dims. Viewed as [r0, s0, r1, s1, ...] the result is x broadcast over the r dims, so the
// gradient is the sum over them.
template <class T, class D>
Var<T, D> repeat(const Var<T, D>& x, const std::vector<int64_t>& repeats) {
  const Shape xs = x.shape();
  const int r = int(repeats.size()), lead = r - xs.rank();
  DETR_CHECK(lead >= 0, "repeat: " << r << " repeats given for x " << xs << " (need at least " << xs.rank() << ")");
  std::vector<int64_t> size, st;
  std::vector<bool> tiled;
  Shape os;
  const auto xst = internal::strides_of(xs);
  for (int i = 0; i < r; ++i) {
    DETR_CHECK(repeats[i] >= 0, "repeat: negative repeat " << repeats[i] << " in dim " << i);
    const int64_t s = i < lead ? 1 : xs[i - lead];
    size.insert(size.end(), {repeats[i], s});
    st.insert(st.end(), {0, i < lead ? 0 : xst[i - lead]});
    tiled.insert(tiled.end(), {true, false});
    os.push_back(repeats[i] * s);
  }
  auto out = Tensor<T, D>::empty(os);
  internal::strided_copy_on<D>(x.value().data(), st, out.data(), internal::contiguous_strides(size), size);
  return record("repeat", out, {x}, [size, tiled, xs](const Tensor<T, D>& g, auto& in) {
    auto gx = Tensor<T, D>::empty(xs);
    internal::sum_dims_on<D>(g.data(), size, tiled, gx.data());
    in.add(0, std::move(gx));
  });
}

// A new size-1 dim at `dim` (in [-rank-1, rank]); a view.
template <class T, class D>
Var<T, D> unsqueeze(const Var<T, D>& x, int dim) {
  const Shape& xs = x.shape();
  DETR_CHECK(dim >= -xs.rank() - 1 && dim <= xs.rank(),
             "unsqueeze: dim " << dim << " out of range for x " << xs);
  const int d = dim < 0 ? dim + xs.rank() + 1 : dim;
  Shape os;
  for (int i = 0; i < xs.rank(); ++i) {
    if (i == d) os.push_back(1);
    os.push_back(xs[i]);
  }
  if (d == xs.rank()) os.push_back(1);
  return reshape(x, os);
}

// Drops `dim` when its size is 1, and leaves x as is otherwise (torch.squeeze(x, dim)); a view.
template <class T, class D>
Var<T, D> squeeze(const Var<T, D>& x, int dim) {
  const Shape& xs = x.shape();
  const int d = internal::shape_dim("squeeze", dim, xs);
  if (xs[d] != 1) return x;
  Shape os;
  for (int i = 0; i < xs.rank(); ++i)
    if (i != d) os.push_back(xs[i]);
  return reshape(x, os);
}

// Drops every size-1 dim (torch.squeeze(x)); a view.
template <class T, class D>
Var<T, D> squeeze(const Var<T, D>& x) {
  Shape os;
  for (int64_t s : x.shape())
    if (s != 1) os.push_back(s);
  return reshape(x, os);
}

}  // namespace detr
