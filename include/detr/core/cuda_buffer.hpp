#pragma once
// CUDA device memory: DeviceBuffer<T> is a move-only cudaMalloc allocation (copies are explicit:
// clone(), to_host(), to_device()), and Tensor<T, cuda> is a shape over a shared DeviceBuffer.
// Include only in code built with the CUDA toolkit (target CUDA::cudart).
#include <cuda_runtime_api.h>

#include <memory>
#include <utility>
#include <vector>

#include "detr/core/tensor.hpp"

// Throws detr::Error with the failing expression and CUDA's own message.
#define DETR_CUDA_CHECK(expr)                                                                 \
  do {                                                                                        \
    cudaError_t detr_cuda_err_ = (expr);                                                      \
    DETR_CHECK(detr_cuda_err_ == cudaSuccess,                                                 \
               "CUDA error in " #expr ": " << cudaGetErrorString(detr_cuda_err_));            \
  } while (0)

namespace detr {

// Number of visible CUDA devices; 0 when there is no driver or no GPU (never throws).
inline int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t n) : size_(n) {
    if (n > 0) DETR_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), size_t(n) * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  int64_t size() const { return size_; }

  void copy_from_host(const T* src, int64_t n) {
    DETR_CHECK(n == size_, "DeviceBuffer: copying " << n << " elements into a buffer of " << size_);
    if (n) DETR_CUDA_CHECK(cudaMemcpy(ptr_, src, size_t(n) * sizeof(T), cudaMemcpyHostToDevice));
  }
  void copy_to_host(T* dst, int64_t n) const {
    DETR_CHECK(n == size_, "DeviceBuffer: copying " << size_ << " elements into a host array of " << n);
    if (n) DETR_CUDA_CHECK(cudaMemcpy(dst, ptr_, size_t(n) * sizeof(T), cudaMemcpyDeviceToHost));
  }
  DeviceBuffer clone() const {
    DeviceBuffer b(size_);
    if (size_) DETR_CUDA_CHECK(cudaMemcpy(b.ptr_, ptr_, size_t(size_) * sizeof(T), cudaMemcpyDeviceToDevice));
    return b;
  }

 private:
  T* ptr_ = nullptr;
  int64_t size_ = 0;
};

template <class T>
class Tensor<T, cuda> {
 public:
  using Scalar = T;
  using Device = cuda;

  Tensor() = default;
  static Tensor empty(const Shape& s) {
    Tensor t;
    t.shape_ = s;
    t.buffer_ = std::make_shared<DeviceBuffer<T>>(s.numel());
    return t;
  }
  static Tensor from_host(const Tensor<T, cpu>& h) {
    Tensor t = empty(h.shape());
    t.buffer_->copy_from_host(h.data(), h.numel());
    return t;
  }
  Tensor<T, cpu> to_host() const {
    auto h = Tensor<T, cpu>::empty(shape_);
    buffer_->copy_to_host(h.data(), h.numel());
    return h;
  }
  Tensor clone() const {
    Tensor t;
    t.shape_ = shape_;
    t.buffer_ = std::make_shared<DeviceBuffer<T>>(buffer_->clone());
    return t;
  }

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  T* data() { return buffer_->data(); }
  const T* data() const { return buffer_->data(); }
  Tensor reshape(const Shape& s) const {
    DETR_CHECK(s.numel() == numel(), "reshape: cannot view shape " << shape_ << " as " << s);
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }

 private:
  std::shared_ptr<DeviceBuffer<T>> buffer_;
  Shape shape_;
};

template <class T>
using CudaTensor = Tensor<T, cuda>;

}  // namespace detr
