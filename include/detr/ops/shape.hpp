#pragma once
// Layout ops: reshape (a view), permute and transpose (copies, since tensors are contiguous).
#include <array>
#include <numeric>
#include <vector>

#include "detr/autograd/var.hpp"

namespace detr {

// View with a new shape (one dim may be -1); the gradient is reshaped back.
template <class T>
Var<T> reshape(const Var<T>& x, std::initializer_list<int64_t> dims) {
  return reshape(x, x.value().reshape(dims).shape());
}
template <class T>
Var<T> reshape(const Var<T>& x, const Shape& s) {
  auto out = x.value().reshape(s);
  return record("reshape", out, {x}, [in_shape = x.shape()](const Tensor<T>& g, auto& in) {
    in.add(0, g.reshape(in_shape));
  });
}

namespace internal {
// out = x with dims reordered: out.shape[i] = x.shape[perm[i]].
template <class T>
Tensor<T> permute_copy(const Tensor<T>& x, const std::vector<int>& perm) {
  const Shape& s = x.shape();
  const int r = s.rank();
  Shape os;
  for (int i = 0; i < r; ++i) os.push_back(s[perm[i]]);
  auto out = Tensor<T>::empty(os);
  if (out.numel() == 0) return out;
  auto xs = contiguous_strides(s);
  std::array<int64_t, Shape::kMaxRank> st{};  // input stride of each output dim
  for (int i = 0; i < r; ++i) st[i] = xs[perm[i]];
  // Innermost output dim copied as a run; when it is also innermost in x the run is contiguous.
  const int64_t inner = os[r - 1], rows = out.numel() / inner, sin = st[r - 1];
  const T* px = x.data();
  T* po = out.data();
#pragma omp parallel for if (out.numel() > (1 << 16))
  for (int64_t row = 0; row < rows; ++row) {
    int64_t off = 0, rem = row;
    for (int d = r - 2; d >= 0; --d) {
      off += (rem % os[d]) * st[d];
      rem /= os[d];
    }
    const T* src = px + off;
    T* dst = po + row * inner;
    if (sin == 1) std::copy(src, src + inner, dst);
    else
      for (int64_t k = 0; k < inner; ++k) dst[k] = src[k * sin];
  }
  return out;
}

inline std::vector<int> check_perm(std::vector<int> perm, const Shape& s) {
  DETR_CHECK(int(perm.size()) == s.rank(), "permute: " << perm.size() << " dims given for shape " << s);
  std::vector<bool> seen(perm.size(), false);
  for (int& p : perm) {
    p = s.axis(p);
    DETR_CHECK(!seen[p], "permute: dimension " << p << " repeated for shape " << s);
    seen[p] = true;
  }
  return perm;
}
}  // namespace internal

// Reorders dims: out.shape[i] = x.shape[perm[i]] (torch.permute).
template <class T>
Var<T> permute(const Var<T>& x, std::vector<int> perm) {
  perm = internal::check_perm(std::move(perm), x.shape());
  std::vector<int> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = int(i);
  auto out = internal::permute_copy(x.value(), perm);
  return record("permute", out, {x}, [inverse](const Tensor<T>& g, auto& in) {
    in.add(0, internal::permute_copy(g, inverse));
  });
}

// Swaps two dims (torch.transpose).
template <class T>
Var<T> transpose(const Var<T>& x, int d0, int d1) {
  std::vector<int> perm(x.rank());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[x.shape().axis(d0)], perm[x.shape().axis(d1)]);
  return permute(x, perm);
}

}  // namespace detr
