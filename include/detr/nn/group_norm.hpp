#pragma once
// GroupNorm<Groups, C>: torch.nn.GroupNorm (eps 1e-5, affine); Deformable DETR's input
// projections use GroupNorm<32, 256>.
#include "detr/nn/module.hpp"
#include "detr/ops/group_norm.hpp"

namespace detr {

/// \tparam Groups number of groups   \tparam C channels (a multiple of Groups)   \tparam T scalar
template <int Groups, int C, class T = float>
struct GroupNorm {
  static_assert(Groups > 0 && C > 0, "GroupNorm<Groups, C>: Groups and C must be positive");
  static_assert(C % Groups == 0, "GroupNorm<Groups, C>: C (channels) must be divisible by Groups");
  using Scalar = T;
  static constexpr int num_groups = Groups, num_channels = C;

  Var<T> weight{Tensor<T>::ones({C}), true};  // [C]
  Var<T> bias{Tensor<T>::zeros({C}), true};   // [C]
  T eps = T(1e-5);

  // torch.nn.GroupNorm.reset_parameters: weight 1, bias 0.
  void init(Rng&) {
    weight.mutable_value().fill_(T(1));
    bias.mutable_value().fill_(T(0));
  }

  template <class V>
  void visit(V& v) {
    v.param("weight", weight);
    v.param("bias", bias);
  }

  // x [B, C, *] -> [B, C, *]
  Var<T> forward(const Var<T>& x) const { return group_norm(x, Groups, weight, bias, eps); }
};

}  // namespace detr
