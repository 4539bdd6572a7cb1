#pragma once
// Embedding<N, D>: torch.nn.Embedding(N, D), weight ~ N(0, 1). DETR's object queries are one
// (query_embed), used through `weight` directly.
#include "detr/nn/module.hpp"
#include "detr/ops/indexing.hpp"

namespace detr {

/// \tparam N number of entries   \tparam D embedding width   \tparam T scalar type
template <int N, int D, class T = float>
struct Embedding {
  static_assert(N > 0 && D > 0, "Embedding<N, D>: sizes must be positive");
  using Scalar = T;
  Var<T> weight = parameter<T>({N, D});  // [N, D]

  void init(Rng& rng) { weight.mutable_value().copy_(rng.normal_tensor<T>({N, D})); }
  template <class V>
  void visit(V& v) {
    v.param("weight", weight);
  }
  // index [...] (values in [0, N)) -> [..., D]
  Var<T> forward(const Tensor<int64_t>& index) const { return embedding(weight, index); }
};

}  // namespace detr
