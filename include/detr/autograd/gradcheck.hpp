#pragma once
// gradcheck: compares an op's hand-written backward with central finite differences, in
// double. The output is reduced to a scalar with fixed random weights, so every output element
// and every input element is checked in one run.
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"

namespace detr {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  std::vector<bool> wrt;  // which inputs to differentiate (default: all)
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the first mismatches, naming input and flat index
  explicit operator bool() const { return ok; }
};

// f maps the inputs (as Vars) to one output Var.
inline GradcheckResult gradcheck(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                                 const std::vector<Tensor<double>>& inputs,
                                 GradcheckOptions opt = {}) {
  auto wrt = [&](size_t i) { return opt.wrt.empty() || opt.wrt[i]; };
  std::vector<Var<double>> vars;
  for (size_t i = 0; i < inputs.size(); ++i) vars.emplace_back(inputs[i].clone(), wrt(i));
  Var<double> y = f(vars);
  Rng rng(opt.seed);
  auto w = rng.normal_tensor<double>(y.shape());
  auto objective = [&](const std::vector<Var<double>>& xs) {
    NoGrad ng;
    Var<double> out = f(xs);
    DETR_CHECK(out.shape() == w.shape(), "gradcheck: output shape changed under perturbation");
    return (out.value().arr() * w.arr()).sum();
  };
  GradcheckResult r;
  std::ostringstream msg;
  int reported = 0;
  bool any = false;
  for (auto& v : vars) any = any || v.requires_grad();
  if (!any) {
    r.ok = false;
    r.message = "gradcheck: no input is differentiated";
    return r;
  }
  DETR_CHECK(y.requires_grad(), "gradcheck: output of '" << y.op() << "' does not require grad");
  y.backward(w);
  for (size_t i = 0; i < vars.size(); ++i) {
    if (!wrt(i)) continue;
    Tensor<double> analytic = vars[i].grad();
    if (!analytic.defined()) analytic = Tensor<double>::zeros(vars[i].shape());
    Tensor<double>& x = vars[i].mutable_value();
    for (int64_t k = 0; k < x.numel(); ++k) {
      double orig = x.data()[k];
      x.data()[k] = orig + opt.eps;
      double fp = objective(vars);
      x.data()[k] = orig - opt.eps;
      double fm = objective(vars);
      x.data()[k] = orig;
      double numeric = (fp - fm) / (2 * opt.eps);
      double a = analytic.data()[k], err = std::abs(a - numeric);
      r.max_abs_error = std::max(r.max_abs_error, err);
      if (!(err <= opt.atol + opt.rtol * std::abs(numeric))) {
        r.ok = false;
        if (reported++ < 8)
          msg << "input " << i << " " << x.shape() << " element " << k << ": analytic " << a
              << " vs numeric " << numeric << "\n";
      }
    }
  }
  r.message = msg.str();
  return r;
}

}  // namespace detr
