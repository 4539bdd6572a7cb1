#pragma once
// SGD with momentum, following torch.optim.SGD (torch 1.13, maximize=False):
//
//   d = g + wd * p                                   (coupled L2 decay, when wd != 0)
//   if momentum != 0:
//     buf = d                      on the first step (a copy, no dampening)
//     buf = buf * momentum + (1 - dampening) * d     afterwards
//     d = nesterov ? d + momentum * buf : buf
//   p += -lr * d
// Each `x + alpha * y` is one fused multiply-add, as torch's vectorised add(alpha=) kernel does
// it, so the bits match torch's CPU results (also without FMA hardware: std::fma is exact).
#include <cmath>

#include "detr/core/parallel.hpp"
#include "detr/optim/optimizer.hpp"

namespace detr {

namespace internal {

template <class T>
struct SGDScalars {
  T weight_decay, momentum, keep /* 1 - dampening */, neg_lr;
};

// The element loop, one instantiation per case so that each is a straight vectorised loop.
template <bool Decay, bool Momentum, bool First, bool Nesterov, class T>
void sgd_update(int64_t n, T* w, const T* g, T* buf, const SGDScalars<T>& s) {
  parallel_for_simd(n >= kOptimParallelMin, n, [=, s = s](int64_t i) {
    T d = g[i];
    if constexpr (Decay) d = std::fma(w[i], s.weight_decay, d);
    if constexpr (Momentum) {
      T b = d;
      if constexpr (!First) b = std::fma(d, s.keep, buf[i] * s.momentum);
      buf[i] = b;
      d = Nesterov ? std::fma(b, s.momentum, d) : b;
    }
    w[i] = std::fma(d, s.neg_lr, w[i]);
  });
}

}  // namespace internal

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

template <class T>
class SGD : public Optimizer<T> {
 public:
  SGD(std::vector<ParamGroupSpec<T>> groups, SGDOptions o = {})
      : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "SGD"), opt_(o) {
    DETR_CHECK(o.momentum >= 0, "SGD: invalid momentum " << o.momentum);
    DETR_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
               "SGD: nesterov momentum requires momentum > 0 and dampening 0 (got momentum "
                   << o.momentum << ", dampening " << o.dampening << ")");
  }
  // One group holding every parameter.
  SGD(std::vector<NamedParameter<T>> params, SGDOptions o = {})
      : SGD(std::vector<ParamGroupSpec<T>>{{std::move(params)}}, o) {}

  const char* type_name() const override { return "SGD"; }
  std::vector<const char*> state_names() const override { return {"momentum_buffer"}; }
  const SGDOptions& options() const { return opt_; }

  void step() override {
    this->for_each_with_grad("SGD", [&](const ParamGroup<T>& g, NamedParameter<T>& p, ParamState<T>& st) {
      Tensor<T>& buf = st.buffers[0];  // momentum_buffer (shape of p)
      const bool use_momentum = opt_.momentum != 0;
      const bool first = use_momentum && !buf.defined();
      if (first) buf = Tensor<T>::empty(p.var->shape());
      internal::SGDScalars<T> s{T(g.weight_decay), T(opt_.momentum), T(1 - opt_.dampening), T(-g.lr)};
      const bool decay = g.weight_decay != 0;
      auto run = [&]<bool Decay>() {
        T* w = p.var->mutable_value().data();
        const T* grad = p.var->grad().data();
        const int64_t n = p.var->numel();
        if (!use_momentum) internal::sgd_update<Decay, false, false, false>(n, w, grad, static_cast<T*>(nullptr), s);
        else if (first && opt_.nesterov) internal::sgd_update<Decay, true, true, true>(n, w, grad, buf.data(), s);
        else if (first) internal::sgd_update<Decay, true, true, false>(n, w, grad, buf.data(), s);
        else if (opt_.nesterov) internal::sgd_update<Decay, true, false, true>(n, w, grad, buf.data(), s);
        else internal::sgd_update<Decay, true, false, false>(n, w, grad, buf.data(), s);
      };
      if (decay) run.template operator()<true>();
      else run.template operator()<false>();
    });
  }

 private:
  SGDOptions opt_;
};

}  // namespace detr
