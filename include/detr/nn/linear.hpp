#pragma once
// Linear<In, Out>: torch.nn.Linear (y = x W^T + b), with torch's default initialisation.
#include <cmath>

#include "detr/nn/module.hpp"
#include "detr/ops/linalg.hpp"

namespace detr {

/// \tparam In  input features    \tparam Out output features
/// \tparam T   scalar type       \tparam Bias whether the layer has a bias
template <int In, int Out, class T = float, bool Bias = true>
struct Linear {
  static_assert(In > 0 && Out > 0, "Linear<In, Out>: feature sizes must be positive");
  using Scalar = T;
  static constexpr int in_features = In, out_features = Out;

  Var<T> weight = parameter<T>({Out, In});  // [Out, In]
  Var<T> bias = Bias ? parameter<T>({Out}) : Var<T>();  // [Out]

  // kaiming_uniform_(a=sqrt(5)) for the weight and U(-1/sqrt(In), 1/sqrt(In)) for the bias,
  // which both reduce to U(-1/sqrt(In), 1/sqrt(In)) (torch.nn.Linear.reset_parameters).
  void init(Rng& rng) {
    double bound = 1.0 / std::sqrt(double(In));
    weight.mutable_value().copy_(rng.uniform_tensor<T>({Out, In}, -bound, bound));
    if constexpr (Bias) bias.mutable_value().copy_(rng.uniform_tensor<T>({Out}, -bound, bound));
  }
  // Xavier-uniform weight and zero bias (DETR's transformer projections).
  void init_xavier(Rng& rng) {
    double bound = std::sqrt(6.0 / double(In + Out));
    weight.mutable_value().copy_(rng.uniform_tensor<T>({Out, In}, -bound, bound));
    if constexpr (Bias) bias.mutable_value().fill_(T(0));
  }

  template <class V>
  void visit(V& v) {
    v.param("weight", weight);
    if constexpr (Bias) v.param("bias", bias);
  }

  // x [..., In] -> [..., Out]
  Var<T> forward(const Var<T>& x) const { return linear(x, weight, bias); }
  // relu(forward(x)), fused (see linear_relu)
  Var<T> forward_relu(const Var<T>& x) const { return linear_relu(x, weight, bias); }
  // dropout.forward(relu(forward(x))), fused (see linear_relu_dropout)
  template <class D>
  Var<T> forward_relu_dropout(const Var<T>& x, D& dropout) const {
    return linear_relu_dropout(x, weight, bias, dropout.p, dropout.training, dropout.rng);
  }
};

}  // namespace detr
