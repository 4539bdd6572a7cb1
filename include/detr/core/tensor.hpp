#pragma once
// Tensor<T, Device>: a contiguous row-major array with a runtime shape over a shared buffer.
// Copies of a Tensor share memory (like torch.Tensor); clone() copies the data. Reshape and
// slicing along the first dimension are views; every other layout change copies.
#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <vector>

#include "detr/core/device.hpp"
#include "detr/core/error.hpp"
#include "detr/core/host_allocator.hpp"
#include "detr/core/shape.hpp"

namespace detr {

template <class T, class Device = cpu>
class Tensor;

namespace internal {
// 64-byte aligned host allocation (AVX-512 loads, whole cache lines), large blocks cached.
template <class T>
std::shared_ptr<T> allocate_host(int64_t n) {
  static_assert(std::is_trivially_copyable_v<T>, "tensor elements must be trivially copyable");
  const size_t bytes = size_t(n) * sizeof(T);
  void* p = HostCache::instance().allocate(bytes);
  return std::shared_ptr<T>(static_cast<T*>(p), [bytes](T* q) { HostCache::instance().deallocate(q, bytes); });
}

// The shape `dims` names for a tensor of shape `from`, with one -1 inferred from the numel.
inline Shape resolve_reshape(const Shape& from, std::vector<int64_t> dims) {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) {
      DETR_CHECK(infer < 0, "reshape: more than one -1 in target shape");
      infer = int(i);
    } else {
      known *= dims[i];
    }
  }
  if (infer >= 0) {
    DETR_CHECK(known > 0 && from.numel() % known == 0, "reshape: cannot infer -1 when viewing shape " << from);
    dims[infer] = from.numel() / known;
  }
  return Shape(std::span<const int64_t>(dims));
}
}  // namespace internal

template <class T>
class Tensor<T, cpu> {
 public:
  using Scalar = T;
  using Device = cpu;
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatrixMap = Eigen::Map<Matrix, Eigen::Unaligned>;
  using ConstMatrixMap = Eigen::Map<const Matrix, Eigen::Unaligned>;
  using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;
  using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

  Tensor() = default;  // undefined: defined() == false

  // Uninitialised storage of the given shape.
  static Tensor empty(const Shape& shape) {
    Tensor t;
    t.shape_ = shape;
    t.storage_ = internal::allocate_host<T>(shape.numel());
    return t;
  }
  static Tensor full(const Shape& shape, T value) {
    Tensor t = empty(shape);
    std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  static Tensor zeros(const Shape& shape) { return full(shape, T(0)); }
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  static Tensor scalar(T value) { return full(Shape{}, value); }
  static Tensor from(const Shape& shape, std::initializer_list<T> values) {
    return from(shape, std::vector<T>(values));
  }
  static Tensor from(const Shape& shape, const std::vector<T>& values) {
    DETR_CHECK(int64_t(values.size()) == shape.numel(),
               "Tensor::from: shape " << shape << " needs " << shape.numel() << " values, got "
                                      << values.size());
    Tensor t = empty(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  // 0, 1, ..., n-1 as a 1-d tensor.
  static Tensor arange(int64_t n) {
    Tensor t = empty(Shape{n});
    for (int64_t i = 0; i < n; ++i) t.data()[i] = T(i);
    return t;
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t numel() const { return shape_.numel(); }

  T* data() { return storage_.get() + offset_; }
  const T* data() const { return storage_.get() + offset_; }
  // True when no other tensor shares this buffer (safe to write in place).
  bool unique() const { return storage_.use_count() == 1; }
  bool shares_storage_with(const Tensor& o) const { return storage_ == o.storage_; }

  T item() const {
    DETR_CHECK(numel() == 1, "item(): tensor of shape " << shape_ << " has " << numel()
                                                        << " elements, expected 1");
    return data()[0];
  }
  // Element access by full index (bounds-checked); meant for tests and small bookkeeping.
  T& at(std::initializer_list<int64_t> idx) { return data()[flat_index(idx)]; }
  T at(std::initializer_list<int64_t> idx) const { return data()[flat_index(idx)]; }

  // View with a new shape of the same numel; one dimension may be -1.
  Tensor reshape(std::initializer_list<int64_t> dims) const {
    return reshape(internal::resolve_reshape(shape_, std::vector<int64_t>(dims)));
  }
  Tensor reshape(const Shape& s) const {
    DETR_CHECK(s.numel() == numel(),
               "reshape: cannot view shape " << shape_ << " as " << s << " (numel differs)");
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }
  // View of rows [begin, end) along the first dimension.
  Tensor slice0(int64_t begin, int64_t end) const {
    DETR_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "slice0: range [" << begin << ", " << end << ") invalid for shape " << shape_);
    Tensor t = *this;
    t.shape_[0] = end - begin;
    t.offset_ += begin * shape_.prod(1, rank());
    return t;
  }
  // View of entry i along the first dimension, that dimension dropped.
  Tensor operator[](int64_t i) const {
    DETR_CHECK(rank() >= 1 && 0 <= i && i < shape_[0],
               "index " << i << " out of range for shape " << shape_);
    Tensor t = slice0(i, i + 1);
    t.shape_ = shape_.sub(1, rank());
    return t;
  }

  Tensor clone() const {
    Tensor t = empty(shape_);
    if (numel()) std::memcpy(t.data(), data(), sizeof(T) * numel());
    return t;
  }
  // Copy values from a tensor of the same shape into this buffer.
  void copy_(const Tensor& src) {
    DETR_CHECK(src.shape() == shape_, "copy_: source shape " << src.shape() << " vs destination "
                                                             << shape_);
    if (numel()) std::memmove(data(), src.data(), sizeof(T) * numel());
  }
  void fill_(T v) { std::fill_n(data(), numel(), v); }

  template <class U>
  Tensor<U, cpu> cast() const {
    auto t = Tensor<U, cpu>::empty(shape_);
    for (int64_t i = 0; i < numel(); ++i) t.data()[i] = static_cast<U>(data()[i]);
    return t;
  }
  std::vector<T> to_vector() const { return std::vector<T>(data(), data() + numel()); }

  // Eigen views. mat(): [numel / last_dim, last_dim]; arr(): flat column.
  MatrixMap mat() { return MatrixMap(data(), rows(), cols()); }
  ConstMatrixMap mat() const { return ConstMatrixMap(data(), rows(), cols()); }
  MatrixMap mat(int64_t r, int64_t c) {
    check_mat(r, c);
    return MatrixMap(data(), r, c);
  }
  ConstMatrixMap mat(int64_t r, int64_t c) const {
    check_mat(r, c);
    return ConstMatrixMap(data(), r, c);
  }
  ArrayMap arr() { return ArrayMap(data(), numel()); }
  ConstArrayMap arr() const { return ConstArrayMap(data(), numel()); }

 private:
  int64_t cols() const { return rank() == 0 ? 1 : shape_.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  void check_mat(int64_t r, int64_t c) const {
    DETR_CHECK(r * c == numel(), "mat(" << r << ", " << c << ") of tensor " << shape_);
  }
  int64_t flat_index(std::initializer_list<int64_t> idx) const {
    DETR_CHECK(int(idx.size()) == rank(), "at(): " << idx.size() << " indices for shape " << shape_);
    int64_t flat = 0;
    int d = 0;
    for (int64_t i : idx) {
      DETR_CHECK(i >= 0 && i < shape_[d], "at(): index " << i << " out of range in dim " << d
                                                         << " of shape " << shape_);
      flat = flat * shape_[d++] + i;
    }
    return flat;
  }

  std::shared_ptr<T> storage_;
  int64_t offset_ = 0;
  Shape shape_;
};

template <class T>
using CpuTensor = Tensor<T, cpu>;

template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T, cpu>& t) {
  os << "Tensor" << t.shape() << " {";
  int64_t n = std::min<int64_t>(t.numel(), 16);
  for (int64_t i = 0; i < n; ++i) os << (i ? ", " : "") << t.data()[i];
  if (t.numel() > n) os << ", ...";
  return os << '}';
}

}  // namespace detr
