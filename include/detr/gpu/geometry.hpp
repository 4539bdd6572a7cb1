#pragma once
// Index geometry that the host computes once per op and the device kernels read by value: where
// each operand of a broadcasting op lives for a flat output index, and which input elements a
// reduction sums into each output. Plain structs with DETR_HD members, so the CPU tests run them.
#include <cstdint>

#include "detr/core/device.hpp"
#include "detr/core/shape.hpp"

namespace detr::gpu {

constexpr int kMaxRank = Shape::kMaxRank;

// N operands read at strides (0 on broadcast dims) over an output of `shape` (row-major).
template <int N>
struct Strided {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};

  DETR_HD void offsets(int64_t i, int64_t (&off)[N]) const {
    for (int n = 0; n < N; ++n) off[n] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t c = i % shape[d];
      i /= shape[d];
      for (int n = 0; n < N; ++n) off[n] += c * strides[n][d];
    }
  }
};

// A sum over some dims of a contiguous input. Output element o (row-major over the kept dims)
// is the sum over the reduced positions j of in[base(o) + reduced_offset(j)].
struct Reduction {
  int kept_rank = 0, reduced_rank = 0;
  int64_t kept_shape[kMaxRank] = {}, kept_stride[kMaxRank] = {};
  int64_t reduced_shape[kMaxRank] = {}, reduced_stride[kMaxRank] = {};
  int64_t outputs = 1, reduced_count = 1;

  DETR_HD int64_t base(int64_t o) const { return offset(o, kept_rank, kept_shape, kept_stride); }
  DETR_HD int64_t reduced_offset(int64_t j) const {
    return offset(j, reduced_rank, reduced_shape, reduced_stride);
  }

  // Built from the input's dims and which of them are summed (`reduced[d]`). Size-1 dims are
  // dropped and neighbours of the same kind merged, so most reductions have one or two dims.
  static Reduction of(const int64_t* size, int rank, const bool* reduced) {
    Reduction r;
    int64_t stride = 1, numel = 1;
    int last_kind = -1;  // kind of the dim before (going from the last dim to the first)
    int64_t kept_rev[2 * kMaxRank][2], red_rev[2 * kMaxRank][2];
    int nk = 0, nr = 0;
    DETR_CHECK(rank <= 2 * kMaxRank, "reduction (CUDA): " << rank << " dims, at most " << 2 * kMaxRank);
    for (int d = rank - 1; d >= 0; --d) {
      numel *= size[d];
      if (size[d] == 1) continue;
      const int kind = reduced[d] ? 1 : 0;
      auto& list = kind ? red_rev : kept_rev;
      int& count = kind ? nr : nk;
      if (kind == last_kind) {
        list[count - 1][0] *= size[d];  // contiguous with the previous dim of its kind: merge
      } else {
        list[count][0] = size[d];
        list[count][1] = stride;
        ++count;
      }
      last_kind = kind;
      stride *= size[d];
    }
    DETR_CHECK(nk <= kMaxRank && nr <= kMaxRank,
               "reduction (CUDA): " << nk << " kept and " << nr << " summed dims after merging, at most " << kMaxRank);
    for (int i = 0; i < nk; ++i) {
      r.kept_shape[i] = kept_rev[nk - 1 - i][0];
      r.kept_stride[i] = kept_rev[nk - 1 - i][1];
      r.outputs *= r.kept_shape[i];
    }
    for (int i = 0; i < nr; ++i) {
      r.reduced_shape[i] = red_rev[nr - 1 - i][0];
      r.reduced_stride[i] = red_rev[nr - 1 - i][1];
      r.reduced_count *= r.reduced_shape[i];
    }
    r.kept_rank = nk;
    r.reduced_rank = nr;
    if (numel == 0) r.reduced_count = 0;  // outputs of an empty input are sums of nothing
    return r;
  }
  static Reduction of(const Shape& in, const bool* reduced) { return of(in.begin(), in.rank(), reduced); }

  // How many partial sums each output gets (first pass), so that a reduction to few outputs
  // still spreads over many threads; the partials of one output are then added in order.
  int64_t slices() const {
    if (reduced_count < 512 || outputs >= 8192) return 1;
    int64_t s = 65536 / outputs;
    if (s > reduced_count / 64) s = reduced_count / 64;
    if (s > 4096) s = 4096;
    return s < 1 ? 1 : s;
  }

 private:
  DETR_HD static int64_t offset(int64_t i, int rank, const int64_t* shape, const int64_t* stride) {
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      off += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return off;
  }
};

}  // namespace detr::gpu
