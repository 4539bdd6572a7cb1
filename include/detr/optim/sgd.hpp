#pragma once
// SGD with momentum, following torch.optim.SGD (torch 1.13, maximize=False):
//
//   d = g + wd * p                                   (coupled L2 decay, when wd != 0)
//   if momentum != 0:
//     buf = d                      on the first step (a copy, no dampening)
//     buf = buf * momentum + (1 - dampening) * d     afterwards
//     d = nesterov ? d + momentum * buf : buf
//   p += -lr * d
#include "detr/optim/optimizer.hpp"

namespace detr {

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
      const T wd = T(g.weight_decay), mom = T(opt_.momentum), keep = T(1 - opt_.dampening);
      const T neg_lr = T(-g.lr);
      const bool decay = g.weight_decay != 0, nesterov = opt_.nesterov;
      T* pw = p.var->mutable_value().data();
      const T* pg = p.var->grad().data();
      T* pb = use_momentum ? buf.data() : nullptr;
      const int64_t n = p.var->numel();
#pragma omp parallel for simd if (n >= internal::kOptimParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        T d = decay ? pg[i] + wd * pw[i] : pg[i];
        if (use_momentum) {
          const T b = first ? d : pb[i] * mom + keep * d;
          pb[i] = b;
          d = nesterov ? d + mom * b : b;
        }
        pw[i] = pw[i] + neg_lr * d;
      }
    });
  }

 private:
  SGDOptions opt_;
};

}  // namespace detr
