#pragma once
// FFN<D, F>: the feed-forward half of a DETR transformer layer, post-norm:
//   x = norm(x + dropout2(linear2(dropout(relu(linear1(x))))))
// Its tensors sit directly on the enclosing layer in the reference (linear1, linear2, and a norm
// whose name depends on the layer: norm2 in encoder layers, norm3 in decoder layers), so the norm
// name is a template argument and the owner visits the FFN with an empty name.
#include <algorithm>

#include "detr/nn/dropout.hpp"
#include "detr/nn/layer_norm.hpp"
#include "detr/nn/linear.hpp"
#include "detr/ops/elementwise.hpp"

namespace detr {

// A string usable as a template argument: FFN<256, 2048, "norm3">.
template <size_t N>
struct FixedString {
  char chars[N]{};
  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }
  constexpr const char* c_str() const { return chars; }
};

/// \tparam D model width   \tparam F hidden width   \tparam NormName the norm's state_dict name
template <int D, int F, FixedString NormName = "norm2", class T = float>
struct FFN {
  using Scalar = T;
  Linear<D, F, T> linear1;
  Linear<F, D, T> linear2;
  LayerNorm<D, T> norm;
  Dropout<T> dropout, dropout_residual;

  void set_dropout(double p) { dropout.p = dropout_residual.p = p; }
  void init(Rng& rng) {
    linear1.init(rng);
    linear2.init(rng);
    norm.init(rng);
    dropout.init(rng);
    dropout_residual.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("linear1", linear1);
    v.child("linear2", linear2);
    v.child(NormName.c_str(), norm);
    v.child("", dropout);
    v.child("", dropout_residual);
  }
  // x [..., D] -> [..., D]
  Var<T> forward(const Var<T>& x) {
    Var<T> h = linear2.forward(linear1.forward_relu_dropout(x, dropout));
    return norm.forward(x + dropout_residual.forward(h));
  }
};

}  // namespace detr
