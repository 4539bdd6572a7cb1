#pragma once
// LayerNorm<D>: torch.nn.LayerNorm(D) over the last dimension (weight 1, bias 0, eps 1e-5).
#include "detr/nn/module.hpp"
#include "detr/ops/layer_norm.hpp"

namespace detr {

/// \tparam D normalised (last) dimension   \tparam T scalar type
template <int D, class T = float>
struct LayerNorm {
  static_assert(D > 0, "LayerNorm<D>: D must be positive");
  using Scalar = T;
  Var<T> weight = parameter<T>({D});  // [D]
  Var<T> bias = parameter<T>({D});    // [D]
  double eps = 1e-5;

  void init(Rng&) {
    weight.mutable_value().fill_(T(1));
    bias.mutable_value().fill_(T(0));
  }
  template <class V>
  void visit(V& v) {
    v.param("weight", weight);
    v.param("bias", bias);
  }
  // x [..., D] -> [..., D]
  Var<T> forward(const Var<T>& x) const { return layer_norm(x, weight, bias, eps); }
};

}  // namespace detr
