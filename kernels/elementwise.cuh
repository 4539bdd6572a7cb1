#pragma once
// Element-wise CUDA kernels. The per-element math is DETR_HD code shared with the CPU path, so
// CPU tests exercise the same bodies; launchers use grid-stride loops.
#include "detr/core/cuda_buffer.hpp"

namespace detr::kernels {

// y = a * x + y for one element.
template <class T>
DETR_HD inline T axpy_element(T a, T x, T y) {
  return a * x + y;
}

template <class T>
__global__ void axpy_kernel(int64_t n, T a, const T* x, T* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = axpy_element(a, x[i], y[i]);
}

// y [N] = a * x [N] + y [N] on the device.
template <class T>
void axpy(T a, const Tensor<T, cuda>& x, Tensor<T, cuda>& y) {
  DETR_CHECK(x.shape() == y.shape(), "axpy: x " << x.shape() << " vs y " << y.shape());
  const int64_t n = x.numel();
  if (!n) return;
  const int threads = 256;
  const int blocks = int(std::min<int64_t>((n + threads - 1) / threads, 65535));
  axpy_kernel<<<blocks, threads>>>(n, a, x.data(), y.data());
  DETR_CUDA_CHECK(cudaGetLastError());
  DETR_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace detr::kernels
