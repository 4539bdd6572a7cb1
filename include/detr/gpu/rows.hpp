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
// P [B * H, Lq, Lk] in place: scale, masks (each may be null), softmax per row. blocked /
// additive are [Lq, Lk] or per head [B * H, Lq, Lk]; pad is [B, Lk] (1 = padding key).
template <class T>
void attention_softmax(T* P, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale, const uint8_t* blocked,
                       bool blocked_per_head, const T* additive, bool additive_per_head, const uint8_t* pad);
// x, y [R, D]; w, b [D]; mean, rstd [R] (outputs).
template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t R, int64_t D, T eps);
// dx [R, D] (skipped when null), dw and db [D].
template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dw, T* db,
                         int64_t R, int64_t D);

}  // namespace detr::gpu
