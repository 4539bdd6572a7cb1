#pragma once
// Tensor<T, cuda>: the device twin of Tensor<T, cpu>, with the same value semantics (copies share
// memory, clone() copies; reshape, slice0 and operator[] are views) over stream-ordered device
// memory (detr/gpu/runtime.hpp). Element access from the host goes through explicit copies:
// to_host(), item(), to_vector(). Compiles with any host compiler; link detr::cuda to use it.
#include <memory>
#include <vector>

#include "detr/core/tensor.hpp"
#include "detr/gpu/elementwise.hpp"
#include "detr/gpu/runtime.hpp"

namespace detr {

template <class T>
class Tensor<T, cuda> {
 public:
  using Scalar = T;
  using Device = cuda;

  Tensor() = default;  // undefined: defined() == false

  static Tensor empty(const Shape& shape) {
    static_assert(std::is_trivially_copyable_v<T>, "tensor elements must be trivially copyable");
    Tensor t;
    t.shape_ = shape;
    t.defined_ = true;
    const size_t bytes = size_t(shape.numel()) * sizeof(T);
    t.storage_ = std::shared_ptr<T>(static_cast<T*>(gpu::allocate(bytes)),
                                    [bytes](T* p) { gpu::deallocate(p, bytes); });
    return t;
  }
  static Tensor full(const Shape& shape, T value) {
    Tensor t = empty(shape);
    t.fill_(value);
    return t;
  }
  static Tensor zeros(const Shape& shape) {
    Tensor t = empty(shape);
    gpu::fill_bytes_zero(t.data(), t.bytes());
    return t;
  }
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  static Tensor scalar(T value) { return full(Shape{}, value); }
  static Tensor from(const Shape& shape, const std::vector<T>& values) {
    return from_host(Tensor<T, cpu>::from(shape, values));
  }
  static Tensor from_host(const Tensor<T, cpu>& h) {
    Tensor t = empty(h.shape());
    gpu::copy_to_device(t.data(), h.data(), t.bytes());
    return t;
  }
  Tensor<T, cpu> to_host() const {
    auto h = Tensor<T, cpu>::empty(shape_);
    gpu::copy_to_host(h.data(), data(), bytes());
    return h;
  }

  bool defined() const { return defined_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return size_t(numel()) * sizeof(T); }

  T* data() { return storage_.get() + offset_; }
  const T* data() const { return storage_.get() + offset_; }
  bool unique() const { return storage_.use_count() == 1; }
  bool shares_storage_with(const Tensor& o) const { return storage_ == o.storage_; }

  T item() const {
    DETR_CHECK(numel() == 1, "item(): tensor of shape " << shape_ << " has " << numel() << " elements, expected 1");
    T v;
    gpu::copy_to_host(&v, data(), sizeof(T));
    return v;
  }
  std::vector<T> to_vector() const { return to_host().to_vector(); }

  Tensor reshape(std::initializer_list<int64_t> dims) const {
    return reshape(internal::resolve_reshape(shape_, std::vector<int64_t>(dims)));
  }
  Tensor reshape(const Shape& s) const {
    DETR_CHECK(s.numel() == numel(), "reshape: cannot view shape " << shape_ << " as " << s << " (numel differs)");
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }
  Tensor slice0(int64_t begin, int64_t end) const {
    DETR_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "slice0: range [" << begin << ", " << end << ") invalid for shape " << shape_);
    Tensor t = *this;
    t.shape_[0] = end - begin;
    t.offset_ += begin * shape_.prod(1, rank());
    return t;
  }
  Tensor operator[](int64_t i) const {
    DETR_CHECK(rank() >= 1 && 0 <= i && i < shape_[0], "index " << i << " out of range for shape " << shape_);
    Tensor t = slice0(i, i + 1);
    t.shape_ = shape_.sub(1, rank());
    return t;
  }

  Tensor clone() const {
    Tensor t = empty(shape_);
    gpu::copy_on_device(t.data(), data(), bytes());
    return t;
  }
  void copy_(const Tensor& src) {
    DETR_CHECK(src.shape() == shape_, "copy_: source shape " << src.shape() << " vs destination " << shape_);
    gpu::copy_on_device(data(), src.data(), bytes());
  }
  void copy_(const Tensor<T, cpu>& src) {
    DETR_CHECK(src.shape() == shape_, "copy_: host source shape " << src.shape() << " vs destination " << shape_);
    gpu::copy_to_device(data(), src.data(), bytes());
  }
  void fill_(T v) {
    if (numel()) gpu::fill(data(), numel(), v);
  }

 private:
  std::shared_ptr<T> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  bool defined_ = false;
};

template <class T>
using CudaTensor = Tensor<T, cuda>;

// The same values on device To (a shared view when the tensor is already there).
template <class To, class T, class From>
Tensor<T, To> to_device(const Tensor<T, From>& t) {
  if constexpr (std::is_same_v<To, From>) {
    return t;
  } else if constexpr (is_cuda<To>) {
    return Tensor<T, cuda>::from_host(t);
  } else {
    return t.to_host();
  }
}

template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T, cuda>& t) {
  return os << "cuda " << t.to_host();
}

}  // namespace detr
