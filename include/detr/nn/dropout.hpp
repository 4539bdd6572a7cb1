#pragma once
// Dropout: torch.nn.Dropout(p). Owns its random stream, seeded from the model's Rng at init,
// so a model seed reproduces every mask; eval(model) turns it into the identity.
#include "detr/nn/module.hpp"
#include "detr/ops/dropout.hpp"

namespace detr {

template <class T = float>
struct Dropout {
  using Scalar = T;
  double p = 0.1;
  bool training = true;
  Rng rng{0};

  void init(Rng& parent) { rng = Rng(parent.next_u64()); }
  template <class V>
  void visit(V& v) {
    v.mode(training);
    v.random(rng);
  }
  Var<T> forward(const Var<T>& x) { return dropout(x, p, training, rng); }
};

}  // namespace detr
