#pragma once
// Strided loop nests behind the reduction, indexing and layout ops: a copy between two strided
// layouts (expand, slice, concat, repeat and the backward of sum) and a sum over a set of dims
// (sum, mean, and the backward of expand / repeat).
//
// Dims are plain vectors, so a nest may have more dims than a Shape holds (repeat interleaves
// [r0, s0, r1, s1, ...]). Before looping, size-1 dims are dropped and adjacent dims that are
// contiguous in every operand are merged, so the innermost loop is as long as possible and
// usually unit-stride. Work is cut into units that do not depend on the thread count, and each
// output element is written by exactly one unit in a fixed order: the same bits on every run and
// for any OMP_NUM_THREADS.
#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/core/cuda_tensor.hpp"
#include "detr/core/tensor.hpp"
#include "detr/gpu/elementwise.hpp"

namespace detr::internal {

constexpr int kMaxLoopRank = 2 * Shape::kMaxRank;
constexpr int64_t kParallelWork = int64_t(1) << 15;  // below this, threads cost more than they save

// Accumulator for sums: float sums are carried in double (torch uses cascade summation for the
// same reason: long float reductions otherwise lose digits).
template <class T>
using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;

// A loop nest over `size` with the stride (in elements) of each of N operands along each dim.
template <int N>
struct LoopNest {
  std::vector<int64_t> size;
  std::array<std::vector<int64_t>, N> stride;

  int rank() const { return int(size.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : size) n *= s;
    return n;
  }
};

// Row-major strides of a contiguous buffer of these dims.
inline std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& size) {
  std::vector<int64_t> st(size.size());
  int64_t acc = 1;
  for (int i = int(size.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= size[i];
  }
  return st;
}

inline std::vector<int64_t> dims_of(const Shape& s) { return std::vector<int64_t>(s.begin(), s.end()); }

// Drops size-1 dims and merges a dim into the previous one when every operand is contiguous
// across the pair. The result has at least one dim (a single element is the nest [1]).
template <int N>
LoopNest<N> coalesce(const LoopNest<N>& in) {
  LoopNest<N> out;
  for (int d = 0; d < in.rank(); ++d) {
    if (in.size[d] == 1) continue;
    bool merge = !out.size.empty();
    for (int k = 0; k < N && merge; ++k) merge = out.stride[k].back() == in.stride[k][d] * in.size[d];
    if (merge) {
      out.size.back() *= in.size[d];
      for (int k = 0; k < N; ++k) out.stride[k].back() = in.stride[k][d];
      continue;
    }
    out.size.push_back(in.size[d]);
    for (int k = 0; k < N; ++k) out.stride[k].push_back(in.stride[k][d]);
  }
  if (out.size.empty()) {
    out.size.push_back(1);
    for (int k = 0; k < N; ++k) out.stride[k].push_back(0);
  }
  DETR_CHECK(out.rank() <= kMaxLoopRank, "internal: loop nest of rank " << out.rank() << " exceeds "
                                                                         << kMaxLoopRank);
  return out;
}

// Walks the first `outer` dims of a nest in row-major order, tracking each operand's offset.
template <int N>
class Odometer {
 public:
  Odometer(const LoopNest<N>& nest, int outer, int64_t start) : nest_(nest), outer_(outer) {
    off_.fill(0);
    for (int d = outer - 1; d >= 0; --d) {
      idx_[d] = start % nest.size[d];
      start /= nest.size[d];
      for (int k = 0; k < N; ++k) off_[k] += idx_[d] * nest.stride[k][d];
    }
  }
  int64_t operator[](int k) const { return off_[k]; }
  void next() {
    for (int d = outer_ - 1; d >= 0; --d) {
      for (int k = 0; k < N; ++k) off_[k] += nest_.stride[k][d];
      if (++idx_[d] < nest_.size[d]) return;
      for (int k = 0; k < N; ++k) off_[k] -= nest_.stride[k][d] * nest_.size[d];
      idx_[d] = 0;
    }
  }

 private:
  const LoopNest<N>& nest_;
  int outer_;
  std::array<int64_t, kMaxLoopRank> idx_{};
  std::array<int64_t, N> off_{};
};

// Calls f(offsets) for every row (all dims but the last) of a coalesced nest, in parallel over
// blocks of rows when the nest is large. f handles the innermost dim itself.
template <int N, class F>
void for_each_row(const LoopNest<N>& nest, F&& f) {
  const int outer = nest.rank() - 1;
  const int64_t inner = nest.size.back(), rows = nest.numel() / inner;
  const int64_t block = std::max<int64_t>(1, 4096 / inner);
  const int64_t units = (rows + block - 1) / block;
  parallel_for_if(rows * inner > kParallelWork && units > 1, units, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      Odometer<N> od(nest, outer, u * block);
      const int64_t end = std::min(rows, (u + 1) * block);
      for (int64_t r = u * block; r < end; ++r, od.next()) f(od);
    }
  });
}

// dst[dst_stride . i] = src[src_stride . i] for every index i of `size`. The dst positions must be
// distinct (dst is written in parallel).
template <class T>
void strided_copy(const T* src, std::vector<int64_t> src_stride, T* dst, std::vector<int64_t> dst_stride,
                  std::vector<int64_t> size) {
  LoopNest<2> in{std::move(size), {std::move(src_stride), std::move(dst_stride)}};
  if (in.numel() == 0) return;
  const LoopNest<2> nest = coalesce(in);
  const int64_t n = nest.size.back(), ss = nest.stride[0].back(), ds = nest.stride[1].back();
  for_each_row(nest, [&](const Odometer<2>& od) {
    const T* s = src + od[0];
    T* d = dst + od[1];
    if (ss == 1 && ds == 1) std::memcpy(d, s, sizeof(T) * size_t(n));
    else if (ss == 0 && ds == 1) std::fill_n(d, n, *s);
    else
      for (int64_t k = 0; k < n; ++k) d[k * ds] = s[k * ss];
  });
}

// The coalesced nest of a strided copy as the CUDA kernels' geometry (strides 0: src, 1: dst).
inline gpu::Strided<2> copy_geometry(std::vector<int64_t> src_stride, std::vector<int64_t> dst_stride,
                                     std::vector<int64_t> size) {
  const LoopNest<2> nest = coalesce(LoopNest<2>{std::move(size), {std::move(src_stride), std::move(dst_stride)}});
  DETR_CHECK(nest.rank() <= gpu::kMaxRank,
             "strided copy (CUDA): " << nest.rank() << " dims after merging, at most " << gpu::kMaxRank);
  gpu::Strided<2> geo;
  geo.rank = nest.rank();
  for (int d = 0; d < geo.rank; ++d) {
    geo.shape[d] = nest.size[d];
    geo.strides[0][d] = nest.stride[0][d];
    geo.strides[1][d] = nest.stride[1][d];
  }
  return geo;
}

// strided_copy on device D.
template <class D, class T>
void strided_copy_on(const T* src, std::vector<int64_t> src_stride, T* dst, std::vector<int64_t> dst_stride,
                     std::vector<int64_t> size) {
  if constexpr (is_cuda<D>) {
    int64_t n = 1;
    for (int64_t s : size) n *= s;
    if (n == 0) return;
    gpu::strided_copy(src, dst, n, copy_geometry(std::move(src_stride), std::move(dst_stride), std::move(size)));
  } else {
    strided_copy(src, std::move(src_stride), dst, std::move(dst_stride), std::move(size));
  }
}

// Copy of a contiguous `src` of dims `src_size` read through `src_stride` as the contiguous
// tensor `out_shape` (stride 0 = broadcast).
template <class T, class D>
Tensor<T, D> gather_strided(const Tensor<T, D>& src, std::vector<int64_t> src_stride, const Shape& out_shape,
                            int64_t src_offset = 0) {
  auto out = Tensor<T, D>::empty(out_shape);
  auto size = dims_of(out_shape);
  strided_copy_on<D>(src.data() + src_offset, std::move(src_stride), out.data(), contiguous_strides(size), size);
  return out;
}

// Sum of n contiguous values, in blocks so that long float rows keep their digits.
template <class T>
Acc<T> row_sum(const T* p, int64_t n) {
  constexpr int64_t kBlock = 2048;
  Acc<T> acc = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    int64_t m = std::min(kBlock, n - b);
    acc += Acc<T>(Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p + b, m).sum());
  }
  return acc;
}

// acc[0, n) += p[0, n). Kept out of line: inlined into sum_dims' loop over rows, GCC 12 jams
// two rows into one scalar loop instead of vectorising this one (4x slower).
template <class T>
[[gnu::noinline]] void add_to(Acc<T>* __restrict acc, const T* __restrict p, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] += Acc<T>(p[k]);
}

// out = sum of the contiguous `src` (dims `size`) over the dims where reduced[d]; `out` is
// contiguous over the kept dims in order.
template <class T>
void sum_dims(const T* src, const std::vector<int64_t>& size, const std::vector<bool>& reduced, T* out) {
  LoopNest<2> in{size, {contiguous_strides(size), std::vector<int64_t>(size.size(), 0)}};
  int64_t acc = 1;
  for (int d = int(size.size()) - 1; d >= 0; --d)
    if (!reduced[d]) {
      in.stride[1][d] = acc;
      acc *= size[d];
    }
  const int64_t n_out = acc;
  if (n_out == 0) return;
  if (in.numel() == 0) {
    std::fill_n(out, n_out, T(0));
    return;
  }
  const LoopNest<2> nest = coalesce(in);  // dims now alternate kept / reduced (out stride 0)
  const int r = nest.rank();
  const bool last_reduced = nest.stride[1][r - 1] == 0 && nest.size[r - 1] > 1;
  // Split the dims before the last into reduced and kept; the last dim is the inner loop.
  LoopNest<1> red, kept;
  for (int d = 0; d < r - 1; ++d) {
    auto& part = nest.stride[1][d] == 0 ? red : kept;
    part.size.push_back(nest.size[d]);
    part.stride[0].push_back(nest.stride[0][d]);
  }
  // Source offset of every combination of the reduced outer dims, in row-major order.
  std::vector<int64_t> red_off(size_t(red.numel()));
  {
    red.size.push_back(1);  // the odometer walks all dims but a trailing one
    red.stride[0].push_back(0);
    Odometer<1> od(red, red.rank() - 1, 0);
    for (auto& o : red_off) {
      o = od[0];
      od.next();
    }
  }
  const int kr = kept.rank();
  auto kept_base = [&](int64_t i) {  // source offset of the i-th combination of kept outer dims
    int64_t off = 0;
    for (int d = kr - 1; d >= 0; --d) {
      off += (i % kept.size[d]) * kept.stride[0][d];
      i /= kept.size[d];
    }
    return off;
  };

  if (last_reduced) {
    const int64_t len = nest.size[r - 1];
    if (n_out == 1 && red_off.size() == 1) {
      // One long row: fixed blocks summed in parallel, partials added in order.
      constexpr int64_t kChunk = int64_t(1) << 16;
      const int64_t chunks = (len + kChunk - 1) / kChunk;
      std::vector<Acc<T>> part(static_cast<size_t>(chunks));
      parallel_for_if(chunks > 1, chunks, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) part[c] = row_sum(src + c * kChunk, std::min(kChunk, len - c * kChunk));
      });
      Acc<T> s = 0;
      for (Acc<T> p : part) s += p;
      out[0] = T(s);
      return;
    }
    parallel_for_if(n_out * len * int64_t(red_off.size()) > kParallelWork, n_out, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const T* base = src + kept_base(i);
        Acc<T> s = 0;
        for (int64_t o : red_off) s += row_sum(base + o, len);
        out[i] = T(s);
      }
    });
    return;
  }
  // Last dim kept: whole rows are added, in column chunks so short outer extents still split.
  const int64_t len = nest.size[r - 1];
  constexpr int64_t kCols = 1024;  // 4 KiB of float per source row: whole pages for the prefetcher
  const int64_t col_chunks = (len + kCols - 1) / kCols, rows = n_out / len;
  parallel_for_if(n_out * int64_t(red_off.size()) > kParallelWork, rows * col_chunks, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t row = u / col_chunks, c0 = (u % col_chunks) * kCols, m = std::min(kCols, len - c0);
      const T* base = src + kept_base(row) + c0;
      alignas(64) Acc<T> buf[kCols];
      std::fill_n(buf, m, Acc<T>(0));
      for (int64_t o : red_off) add_to(buf, base + o, m);
      T* dst = out + row * len + c0;
      for (int64_t k = 0; k < m; ++k) dst[k] = T(buf[k]);
    }
  });
}

// sum_dims on device D.
template <class D, class T>
void sum_dims_on(const T* src, const std::vector<int64_t>& size, const std::vector<bool>& reduced, T* out) {
  if constexpr (is_cuda<D>) {
    bool mask[2 * Shape::kMaxRank] = {};
    DETR_CHECK(size.size() <= 2 * Shape::kMaxRank, "sum (CUDA): " << size.size() << " dims");
    for (size_t d = 0; d < size.size(); ++d) mask[d] = reduced[d];
    gpu::reduce_sum(src, out, gpu::Reduction::of(size.data(), int(size.size()), mask));
  } else {
    sum_dims(src, size, reduced, out);
  }
}

}  // namespace detr::internal
