#pragma once
// Row-wise CUDA backend ops (src/cuda/rows.cu), declared for any host compiler: softmax and
// log_softmax over the last dim, layer_norm. Device pointers; queued on DETR++'s stream.
#include <cstdint>

namespace detr::gpu {

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n);
template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t n, T scale);
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t n);
template <class T>
void log_softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t n);
// x, y [R, D]; w, b [D]; mean, rstd [R] (outputs).
template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t R, int64_t D, T eps);
// dx [R, D] (skipped when null), dw and db [D].
template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dw, T* db,
                         int64_t R, int64_t D);

}  // namespace detr::gpu
