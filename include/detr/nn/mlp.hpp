#pragma once
// MLP<In, Hidden, Out, Layers>: DETR's box head, `Layers` Linear layers with ReLU between
// them, named layers.0 ... layers.{Layers-1} as the reference's ModuleList.
#include <array>

#include "detr/nn/linear.hpp"
#include "detr/ops/elementwise.hpp"

namespace detr {

/// \tparam In input features   \tparam Hidden hidden width   \tparam Out output features
/// \tparam Layers number of Linear layers (>= 1)   \tparam T scalar type
template <int In, int Hidden, int Out, int Layers, class T = float>
struct MLP {
  static_assert(Layers >= 1, "MLP<In, Hidden, Out, Layers>: needs at least one layer");
  using Scalar = T;
  static constexpr int kMiddle = Layers >= 2 ? Layers - 2 : 0;
  using First = Linear<In, (Layers == 1 ? Out : Hidden), T>;

  First first;                                      // layers.0
  std::array<Linear<Hidden, Hidden, T>, kMiddle> middle;  // layers.1 .. layers.{Layers-2}
  Linear<Hidden, Out, T> last;                      // layers.{Layers-1} (unused when Layers == 1)

  void init(Rng& rng) {
    first.init(rng);
    for (auto& l : middle) l.init(rng);
    if constexpr (Layers >= 2) last.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("layers.0", first);
    for (int i = 0; i < kMiddle; ++i) v.child("layers." + std::to_string(i + 1), middle[i]);
    if constexpr (Layers >= 2) v.child("layers." + std::to_string(Layers - 1), last);
  }
  // x [..., In] -> [..., Out]
  Var<T> forward(const Var<T>& x) const {
    if constexpr (Layers == 1) return first.forward(x);
    Var<T> h = relu(first.forward(x));
    for (const auto& l : middle) h = relu(l.forward(h));
    return last.forward(h);
  }
};

}  // namespace detr
