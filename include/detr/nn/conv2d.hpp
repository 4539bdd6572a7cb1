#pragma once
// Conv2d<Cin, Cout, K, ...>: torch.nn.Conv2d with a square kernel, with torch's default
// initialisation. Sizes that fix the weight shape are template arguments.
#include <cmath>

#include "detr/nn/module.hpp"
#include "detr/ops/conv.hpp"

namespace detr {

/// \tparam Cin input channels        \tparam Cout output channels
/// \tparam K kernel size (K x K)     \tparam Stride, Padding, Dilation as in torch (both axes)
/// \tparam T scalar type             \tparam Bias whether the layer has a bias
template <int Cin, int Cout, int K, int Stride = 1, int Padding = 0, int Dilation = 1, class T = float,
          bool Bias = true>
struct Conv2d {
  static_assert(Cin > 0 && Cout > 0, "Conv2d<Cin, Cout, K>: channel counts must be positive");
  static_assert(K > 0 && Stride > 0 && Dilation > 0, "Conv2d: kernel, stride and dilation must be positive");
  static_assert(Padding >= 0, "Conv2d: padding must be non-negative");
  using Scalar = T;
  static constexpr int in_channels = Cin, out_channels = Cout, kernel_size = K;

  Var<T> weight = parameter<T>({Cout, Cin, K, K});      // [Cout, Cin, K, K]
  Var<T> bias = Bias ? parameter<T>({Cout}) : Var<T>();  // [Cout]

  // kaiming_uniform_(a=sqrt(5)) on the weight gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
  // fan_in = Cin K K, and the bias uses the same bound (torch.nn.Conv2d.reset_parameters).
  void init(Rng& rng) {
    const double bound = 1.0 / std::sqrt(double(Cin * K * K));
    weight.mutable_value().copy_(rng.uniform_tensor<T>({Cout, Cin, K, K}, -bound, bound));
    if constexpr (Bias) bias.mutable_value().copy_(rng.uniform_tensor<T>({Cout}, -bound, bound));
  }

  template <class V>
  void visit(V& v) {
    v.param("weight", weight);
    if constexpr (Bias) v.param("bias", bias);
  }

  // x [B, Cin, H, W] -> [B, Cout, OH, OW]
  Var<T> forward(const Var<T>& x) const { return conv2d(x, weight, bias, Stride, Padding, Dilation); }
};

}  // namespace detr
