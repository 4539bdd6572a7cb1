#pragma once
// Shape: a small fixed-capacity list of dimensions (no heap allocation per tensor).
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string>

#include "detr/core/error.hpp"

namespace detr {

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
// GCC 12 reports the initializer_list's backing array as dangling once this constructor is
// inlined into large functions (a false positive: the array outlives the call).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic pop
#endif
  explicit Shape(std::span<const int64_t> dims) { assign(dims.begin(), dims.end()); }

  int rank() const { return rank_; }
  int size() const { return rank_; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  // Dimension with Python-style negative indexing, bounds-checked.
  int64_t dim(int i) const { return d_[axis(i)]; }
  int axis(int i) const {
    int a = i < 0 ? i + rank_ : i;
    DETR_CHECK(a >= 0 && a < rank_, "dimension " << i << " out of range for shape " << *this);
    return a;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[i];
    return n;
  }
  void push_back(int64_t v) {
    DETR_CHECK(rank_ < kMaxRank, "shape rank exceeds " << kMaxRank);
    d_[rank_++] = v;
  }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + rank_; }
  int64_t* begin() { return d_.data(); }
  int64_t* end() { return d_.data() + rank_; }
  int64_t back() const { return d_[rank_ - 1]; }

  // The shape with dims [from, to) only.
  Shape sub(int from, int to) const {
    Shape s;
    for (int i = from; i < to; ++i) s.push_back(d_[i]);
    return s;
  }
  // Product of dims [from, to).
  int64_t prod(int from, int to) const {
    int64_t n = 1;
    for (int i = from; i < to; ++i) n *= d_[i];
    return n;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) {
    os << '[';
    for (int i = 0; i < s.rank_; ++i) os << (i ? ", " : "") << s.d_[i];
    return os << ']';
  }
  std::string str() const {
    std::ostringstream os;
    os << *this;
    return os.str();
  }

 private:
  template <class It>
  void assign(It b, It e) {
    DETR_CHECK(e - b <= kMaxRank, "shape rank " << (e - b) << " exceeds " << kMaxRank);
    rank_ = 0;
    for (; b != e; ++b) {
      DETR_CHECK(*b >= 0, "negative dimension " << *b << " in shape");
      d_[rank_++] = *b;
    }
  }
  std::array<int64_t, kMaxRank> d_{};
  int rank_ = 0;
};

// Row-major strides of a contiguous tensor of this shape.
inline std::array<int64_t, Shape::kMaxRank> contiguous_strides(const Shape& s) {
  std::array<int64_t, Shape::kMaxRank> st{};
  int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

}  // namespace detr
