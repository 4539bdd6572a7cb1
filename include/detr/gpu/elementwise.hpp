#pragma once
// The element-wise CUDA backend (src/cuda/elementwise.cu), declared for any host compiler. All
// pointers are device memory; every call is queued on DETR++'s stream and returns at once. The
// functor F is one of ops/elementwise_math.hpp's, instantiated in the backend for float and double.
#include <cstdint>

#include "detr/core/rng.hpp"
#include "detr/gpu/geometry.hpp"

namespace detr::gpu {

// dst[i] = v (also for int64_t, int32_t, uint8_t).
template <class T>
void fill(T* dst, int64_t n, T v);
// acc[i] += x[i] (gradient accumulation).
template <class T>
void add_into(T* acc, const T* x, int64_t n);
// y[i] = f(x[i])
template <class T, class F>
void map(const T* x, T* y, int64_t n, F f);
// out[i] = g[i] * f.grad(x[i], y[i])
template <class T, class F>
void map_grad(const T* g, const T* x, const T* y, T* out, int64_t n, F f);
// out[i] = f(a[...], b[...]) for the n elements of a broadcast result laid out by geo.
template <class T, class F>
void binary(const T* a, const T* b, T* out, int64_t n, const Strided<2>& geo, F f);
// dst[off1(i)] = src[off0(i)] for the n indices of geo's shape (strides 0: src, 1: dst; the dst
// positions must be distinct). Layout ops: permute, slice, concat, expand, repeat.
template <class T>
void strided_copy(const T* src, T* dst, int64_t n, const Strided<2>& geo);
// out [geo.outputs] = sums of the contiguous input over geo's reduced dims (fixed order).
template <class T>
void reduce_sum(const T* in, T* out, const Reduction& geo);
// y [n / cols, cols] = drop(relu(y + bias)) in place (bias may be null; each part optional).
template <class T>
void bias_act(T* y, const T* bias, int64_t n, int64_t cols, bool relu, const internal::DropoutMask<T>& drop);
// y[i] = drop.apply(i, x[i]) (x and y may be the same): dropout's forward, and its backward
// from the same mask (recomputed from the seed, so no mask is stored).
template <class T>
void dropout(const T* x, T* y, int64_t n, const internal::DropoutMask<T>& drop);
// out = g * (y > 0 ? pass : 0)
template <class T>
void relu_grad(const T* g, const T* y, T* out, int64_t n, T pass);

}  // namespace detr::gpu
