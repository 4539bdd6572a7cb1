// detr/gpu/rows.hpp on the GPU: the bodies of detr/gpu/kernels/rows.hpp on the stream.
#include "detr/gpu/kernels/rows.hpp"
#include "detr/gpu/rows.hpp"
#include "policy.cuh"

namespace detr::gpu {

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n) {
  kernels::for_each_index(on_stream(), rows, kernels::SoftmaxRowBody<T>{x, y, n});
}
template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t n, T scale) {
  kernels::for_each_index(on_stream(), rows, kernels::SoftmaxGradRowBody<T>{y, g, dx, n, scale});
}
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t n) {
  kernels::for_each_index(on_stream(), rows, kernels::LogSoftmaxRowBody<T>{x, y, n});
}
template <class T>
void log_softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t n) {
  kernels::for_each_index(on_stream(), rows, kernels::LogSoftmaxGradRowBody<T>{y, g, dx, n});
}
template <class T>
void attention_softmax(T* P, int64_t B, int64_t H, int64_t Lq, int64_t Lk, T scale, const uint8_t* blocked,
                       bool blocked_per_head, const T* additive, bool additive_per_head, const uint8_t* pad) {
  kernels::for_each_index(on_stream(), B * H * Lq,
                          kernels::AttentionSoftmaxRowBody<T>{P, H, Lq, Lk, scale, blocked, blocked_per_head, additive,
                                                              additive_per_head, pad});
}
template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t R, int64_t D, T eps) {
  kernels::for_each_index(on_stream(), R, kernels::LayerNormRowBody<T>{x, w, b, y, mean, rstd, D, eps});
}
template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* dx, T* dw, T* db,
                         int64_t R, int64_t D) {
  if (dx) kernels::for_each_index(on_stream(), R, kernels::LayerNormInputGradRowBody<T>{g, x, w, mean, rstd, dx, D});
  kernels::for_each_index(on_stream(), D, kernels::LayerNormParamGradBody<T>{g, x, mean, rstd, dw, db, R, D});
}

#define DETR_ROWS(T)                                                                                     \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t);                                      \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, T);                        \
  template void attention_softmax<T>(T*, int64_t, int64_t, int64_t, int64_t, T, const uint8_t*, bool, const T*, \
                                     bool, const uint8_t*);                                                \
  template void log_softmax_forward<T>(const T*, T*, int64_t, int64_t);                                  \
  template void log_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);                       \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, T);    \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);
DETR_ROWS(float)
DETR_ROWS(double)

}  // namespace detr::gpu
