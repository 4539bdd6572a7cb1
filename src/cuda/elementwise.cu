// detr/gpu/elementwise.hpp on the GPU: the bodies of detr/gpu/kernels/elementwise.hpp on the stream.
#include "detr/gpu/elementwise.hpp"
#include "detr/gpu/kernels/elementwise.hpp"
#include "detr/gpu/runtime.hpp"
#include "detr/ops/elementwise_math.hpp"
#include "policy.cuh"

namespace detr::gpu {

template <class T>
void fill(T* dst, int64_t n, T v) {
  kernels::for_each_index(on_stream(), n, kernels::FillBody<T>{dst, v});
}

template <class T>
void add_into(T* acc, const T* x, int64_t n) {
  kernels::for_each_index(on_stream(), n, kernels::AddIntoBody<T>{acc, x});
}

template <class T, class F>
void map(const T* x, T* y, int64_t n, F f) {
  kernels::for_each_index(on_stream(), n, kernels::MapBody<T, F>{x, y, f});
}

template <class T, class F>
void map_grad(const T* g, const T* x, const T* y, T* out, int64_t n, F f) {
  kernels::for_each_index(on_stream(), n, kernels::MapGradBody<T, F>{g, x, y, out, f});
}

template <class T, class F>
void binary(const T* a, const T* b, T* out, int64_t n, const Strided<2>& geo, F f) {
  kernels::for_each_index(on_stream(), n, kernels::BinaryBody<T, F>{a, b, out, geo, f});
}

template <class T>
void strided_copy(const T* src, T* dst, int64_t n, const Strided<2>& geo) {
  kernels::for_each_index(on_stream(), n, kernels::StridedCopyBody<T>{src, dst, geo});
}

template <class T>
void reduce_sum(const T* in, T* out, const Reduction& geo) {
  const int64_t slices = geo.slices();
  Scratch<kernels::SumOf<T>> scratch(slices > 1 ? geo.outputs * slices : 0);
  kernels::reduce_sum(on_stream(), in, out, geo, scratch.data);
}

template <class T>
void bias_act(T* y, const T* bias, int64_t n, int64_t cols, bool relu, const internal::DropoutMask<T>& drop) {
  kernels::for_each_index(on_stream(), n, kernels::BiasActBody<T>{y, bias, cols, relu, drop});
}

template <class T>
void dropout(const T* x, T* y, int64_t n, const internal::DropoutMask<T>& drop) {
  kernels::for_each_index(on_stream(), n, kernels::DropoutBody<T>{x, y, drop});
}

template <class T>
void relu_grad(const T* g, const T* y, T* out, int64_t n, T pass) {
  kernels::for_each_index(on_stream(), n, kernels::ReluGradBody<T>{g, y, out, pass});
}

#define DETR_FILL(T)                          \
  template void fill<T>(T*, int64_t, T); \
  template void strided_copy<T>(const T*, T*, int64_t, const Strided<2>&);
DETR_FILL(float)
DETR_FILL(double)
DETR_FILL(int64_t)
DETR_FILL(int32_t)
DETR_FILL(uint8_t)

#define DETR_UNARY(T, F)                                                        \
  template void map<T, F>(const T*, T*, int64_t, F);                           \
  template void map_grad<T, F>(const T*, const T*, const T*, T*, int64_t, F);
#define DETR_BINARY(T, F) template void binary<T, F>(const T*, const T*, T*, int64_t, const Strided<2>&, F);
#define DETR_FLOATING(T)                                                                        \
  template void add_into<T>(T*, const T*, int64_t);                                             \
  template void reduce_sum<T>(const T*, T*, const Reduction&);                                  \
  template void bias_act<T>(T*, const T*, int64_t, int64_t, bool, const internal::DropoutMask<T>&); \
  template void relu_grad<T>(const T*, const T*, T*, int64_t, T);                               \
  template void dropout<T>(const T*, T*, int64_t, const internal::DropoutMask<T>&);              \
  DETR_UNARY(T, math::Relu)                                                                     \
  DETR_UNARY(T, math::Gelu)                                                                     \
  DETR_UNARY(T, math::Sigmoid)                                                                  \
  DETR_UNARY(T, math::Tanh)                                                                     \
  DETR_UNARY(T, math::Exp)                                                                      \
  DETR_UNARY(T, math::Log)                                                                      \
  DETR_UNARY(T, math::Sqrt)                                                                     \
  DETR_UNARY(T, math::Square)                                                                   \
  DETR_UNARY(T, math::Abs)                                                                      \
  DETR_UNARY(T, math::AddScalar<T>)                                                             \
  DETR_UNARY(T, math::MulScalar<T>)                                                             \
  DETR_UNARY(T, math::DivideBy<T>)                                                              \
  DETR_UNARY(T, math::Clamp<T>)                                                                 \
  DETR_UNARY(T, math::InverseSigmoid<T>)                                                        \
  DETR_BINARY(T, math::Plus)                                                                    \
  DETR_BINARY(T, math::Minus)                                                                   \
  DETR_BINARY(T, math::Times)                                                                   \
  DETR_BINARY(T, math::Divide)                                                                  \
  DETR_BINARY(T, math::NegDivide)                                                               \
  DETR_BINARY(T, math::NegateFirst)                                                             \
  DETR_BINARY(T, math::DivideFirstBy<T>)
DETR_FLOATING(float)
DETR_FLOATING(double)

}  // namespace detr::gpu
