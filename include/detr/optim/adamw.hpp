#pragma once
// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), following
// torch.optim.AdamW's single-tensor path (torch 1.13, amsgrad=False) operation by operation:
//
//   step += 1
//   p   *= 1 - lr * wd                                   (decay decoupled from the gradient)
//   m    = m * beta1 + (1 - beta1) * g
//   v    = v * beta2 + (1 - beta2) * g * g
//   denom = sqrt(v) / sqrt(1 - beta2^step) + eps
//   p   += (-lr / (1 - beta1^step)) * m / denom
//
// Scalars (bias corrections, step size) are computed in double as Python does and rounded to T
// once, as torch's CPU kernels do with Python scalars; tensors stay in T.
#include <cmath>

#include "detr/optim/optimizer.hpp"

namespace detr {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // torch.optim.AdamW's default
};

template <class T>
class AdamW : public Optimizer<T> {
 public:
  AdamW(std::vector<ParamGroupSpec<T>> groups, AdamWOptions o = {})
      : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "AdamW"), opt_(o) {
    DETR_CHECK(o.eps >= 0, "AdamW: invalid eps " << o.eps);
    DETR_CHECK(0 <= o.beta1 && o.beta1 < 1, "AdamW: invalid beta1 " << o.beta1 << " (need [0, 1))");
    DETR_CHECK(0 <= o.beta2 && o.beta2 < 1, "AdamW: invalid beta2 " << o.beta2 << " (need [0, 1))");
  }
  // One group holding every parameter.
  AdamW(std::vector<NamedParameter<T>> params, AdamWOptions o = {})
      : AdamW(std::vector<ParamGroupSpec<T>>{{std::move(params)}}, o) {}

  const char* type_name() const override { return "AdamW"; }
  std::vector<const char*> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  const AdamWOptions& options() const { return opt_; }

  void step() override {
    this->for_each_with_grad("AdamW", [&](const ParamGroup<T>& g, NamedParameter<T>& p, ParamState<T>& st) {
      Tensor<T>& m = st.buffers[0];  // exp_avg     (shape of p)
      Tensor<T>& v = st.buffers[1];  // exp_avg_sq  (shape of p)
      if (!m.defined()) {
        m = Tensor<T>::zeros(p.var->shape());
        v = Tensor<T>::zeros(p.var->shape());
      }
      ++st.step;
      const double bias_correction1 = 1 - std::pow(opt_.beta1, double(st.step));
      const double bias_correction2 = 1 - std::pow(opt_.beta2, double(st.step));
      const T decay = T(1 - g.lr * g.weight_decay);
      const T b1 = T(opt_.beta1), one_minus_b1 = T(1 - opt_.beta1);
      const T b2 = T(opt_.beta2), one_minus_b2 = T(1 - opt_.beta2);
      const T bc2_sqrt = T(std::sqrt(bias_correction2));
      const T neg_step_size = T(-(g.lr / bias_correction1));
      const T eps = T(opt_.eps);
      T* pw = p.var->mutable_value().data();
      const T* pg = p.var->grad().data();
      T* pm = m.data();
      T* pv = v.data();
      const int64_t n = p.var->numel();
#pragma omp parallel for simd if (n >= internal::kOptimParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const T w = pw[i] * decay;
        const T gi = pg[i];
        const T mi = pm[i] * b1 + one_minus_b1 * gi;
        const T vi = pv[i] * b2 + one_minus_b2 * gi * gi;
        pm[i] = mi;
        pv[i] = vi;
        const T denom = std::sqrt(vi) / bc2_sqrt + eps;
        pw[i] = w + neg_step_size * mi / denom;
      }
    });
  }

 private:
  AdamWOptions opt_;
};

}  // namespace detr
