#pragma once
// Kernel bodies of the element-wise backend: maps, broadcasting binaries, fills, gradient
// accumulation, reductions, and the bias / ReLU / dropout epilogue of linear. The math is the
// DETR_HD code the CPU ops call (ops/elementwise_math.hpp, core/rng.hpp).
#include <type_traits>

#include "detr/core/rng.hpp"
#include "detr/gpu/geometry.hpp"
#include "detr/core/device.hpp"
#include "detr/gpu/kernels/launch.hpp"

namespace detr::gpu::kernels {

template <class T>
struct FillBody {
  T* p;
  T v;
  DETR_HD void operator()(int64_t i) const { p[i] = v; }
};

template <class T>
struct AddIntoBody {
  T* acc;
  const T* x;
  DETR_HD void operator()(int64_t i) const { acc[i] += x[i]; }
};

template <class T, class F>
struct MapBody {
  const T* x;
  T* y;
  F f;
  DETR_HD void operator()(int64_t i) const { y[i] = f(x[i]); }
};

// out = g * f'(x, y)
template <class T, class F>
struct MapGradBody {
  const T *g, *x, *y;
  T* out;
  F f;
  DETR_HD void operator()(int64_t i) const { out[i] = g[i] * f.grad(x[i], y[i]); }
};

template <class T, class F>
struct BinaryBody {
  const T *a, *b;
  T* out;
  Strided<2> geo;
  F f;
  DETR_HD void operator()(int64_t i) const {
    int64_t off[2];
    geo.offsets(i, off);
    out[i] = f(a[off[0]], b[off[1]]);
  }
};

template <class T>
struct StridedCopyBody {
  const T* src;
  T* dst;
  Strided<2> geo;
  DETR_HD void operator()(int64_t i) const {
    int64_t off[2];
    geo.offsets(i, off);
    dst[off[1]] = src[off[0]];
  }
};

// Sums of float are carried in double, as the CPU reductions do (ops/strided_loops.hpp).
template <class T>
using SumOf = std::conditional_t<std::is_same_v<T, float>, double, T>;

// partial[o * slices + s] = sum over reduced positions j = s, s + slices, ... of output o; with one
// slice the sum is rounded to T and written to the output directly.
template <class T, class Out>
struct PartialSumBody {
  const T* in;
  Out* partial;
  Reduction geo;
  int64_t slices;
  DETR_HD void operator()(int64_t k) const {
    const int64_t o = k / slices, base = geo.base(o);
    SumOf<T> acc = 0;
    for (int64_t j = k % slices; j < geo.reduced_count; j += slices) acc += in[base + geo.reduced_offset(j)];
    partial[k] = Out(acc);
  }
};

template <class T>
struct SumSlicesBody {
  const SumOf<T>* partial;
  T* out;
  int64_t slices;
  DETR_HD void operator()(int64_t o) const {
    SumOf<T> acc = 0;
    for (int64_t s = 0; s < slices; ++s) acc += partial[o * slices + s];
    out[o] = T(acc);
  }
};

// out [geo.outputs] = the sums of `in`; scratch holds geo.outputs * geo.slices() partial sums
// when slices() > 1 (else unused). The order of additions is fixed: the same bits every run.
template <class Exec, class T>
void reduce_sum(const Exec& exec, const T* in, T* out, const Reduction& geo, SumOf<T>* scratch) {
  const int64_t slices = geo.slices();
  if (slices == 1) {
    for_each_index(exec, geo.outputs, PartialSumBody<T, T>{in, out, geo, 1});
    return;
  }
  for_each_index(exec, geo.outputs * slices, PartialSumBody<T, SumOf<T>>{in, scratch, geo, slices});
  for_each_index(exec, geo.outputs, SumSlicesBody<T>{scratch, out, slices});
}

// y [rows, cols] = dropout(relu(y + bias)) in place, each step optional (linear's epilogue).
template <class T>
struct BiasActBody {
  T* y;
  const T* bias;  // [cols] or null
  int64_t cols;
  bool relu;
  internal::DropoutMask<T> drop;
  DETR_HD void operator()(int64_t i) const {
    T v = y[i];
    if (bias) v += bias[i % cols];
    if (relu) v = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
    y[i] = drop.apply(i, v);
  }
};

template <class T>
struct DropoutBody {
  const T* x;
  T* y;
  internal::DropoutMask<T> drop;
  DETR_HD void operator()(int64_t i) const { y[i] = drop.apply(i, x[i]); }
};

// The backward of that epilogue with relu: g where y > 0, times `pass` (1 / (1 - p) with dropout).
template <class T>
struct ReluGradBody {
  const T *g, *y;
  T* out;
  T pass;
  DETR_HD void operator()(int64_t i) const { out[i] = g[i] * (y[i] > T(0) ? pass : T(0)); }
};

}  // namespace detr::gpu::kernels
