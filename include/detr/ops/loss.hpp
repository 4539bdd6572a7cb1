#pragma once
// Fused classification losses with hand-written backward:
//   cross_entropy       F.cross_entropy(logits, target, weight) with its weighted-mean reduction
//   sigmoid_focal_loss  the element-wise focal loss of RetinaNet as Deformable DETR writes it
#include <cmath>

#include "detr/autograd/var.hpp"

namespace detr {

// logits [N, C], target [N] in [0, C), weight [C] (optional) -> scalar
// sum_i w[y_i] * -log softmax(logits_i)[y_i] / sum_i w[y_i]   (torch's reduction='mean')
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const Tensor<int64_t>& target, const Tensor<T>& weight = {}) {
  DETR_CHECK(logits.rank() == 2 && target.shape() == Shape{logits.dim(0)},
             "cross_entropy: logits must be [N, C] and target [N], got " << logits.shape() << " and " << target.shape());
  const int64_t N = logits.dim(0), C = logits.dim(1);
  if (weight.defined()) DETR_CHECK(weight.shape() == Shape{C}, "cross_entropy: weight must be [" << C << "], got " << weight.shape());
  const Tensor<T> x = logits.value();
  auto probs = Tensor<T>::empty({N, C});
  double loss = 0, wsum = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t y = target.data()[i];
    DETR_CHECK(y >= 0 && y < C, "cross_entropy: target " << i << " is " << y << ", expected 0 <= target < " << C);
    const T* xi = x.data() + i * C;
    T* pi = probs.data() + i * C;
    T m = *std::max_element(xi, xi + C), s = 0;
    for (int64_t c = 0; c < C; ++c) s += (pi[c] = std::exp(xi[c] - m));
    for (int64_t c = 0; c < C; ++c) pi[c] /= s;
    const double w = weight.defined() ? double(weight.data()[y]) : 1.0;
    loss += w * -(double(xi[y] - m) - std::log(double(s)));
    wsum += w;
  }
  auto out = Tensor<T>::scalar(T(loss / wsum));
  return record("cross_entropy", out, {logits}, [probs, target, weight, N, C, wsum](const Tensor<T>& g, auto& in) {
    auto dx = Tensor<T>::empty({N, C});
    const T scale = g.item() / T(wsum);
    for (int64_t i = 0; i < N; ++i) {
      const int64_t y = target.data()[i];
      const T w = (weight.defined() ? weight.data()[y] : T(1)) * scale;
      const T* pi = probs.data() + i * C;
      T* di = dx.data() + i * C;
      for (int64_t c = 0; c < C; ++c) di[c] = w * pi[c];
      di[y] -= w;
    }
    in.add(0, std::move(dx));
  });
}

// logits [...], targets [...] in {0, 1} (float) -> element-wise loss [...]
// alpha_t * (1 - p_t)^gamma * BCE(logits, targets), p = sigmoid(logits) (alpha < 0: no alpha_t).
template <class T>
Var<T> sigmoid_focal_loss(const Var<T>& logits, const Tensor<T>& targets, double alpha = 0.25, double gamma = 2.0) {
  DETR_CHECK(logits.shape() == targets.shape(), "sigmoid_focal_loss: logits " << logits.shape() << " vs targets " << targets.shape());
  const Tensor<T> x = logits.value();
  const int64_t n = x.numel();
  auto out = Tensor<T>::empty(x.shape());
  const T a = T(alpha), gm = T(gamma);
  auto terms = [a, alpha](T xi, T t, T& alpha_t, T& p, T& one_minus_pt, T& bce) {
    p = T(1) / (T(1) + std::exp(-xi));
    bce = std::max(xi, T(0)) - xi * t + std::log1p(std::exp(-std::abs(xi)));  // stable BCE with logits
    one_minus_pt = T(1) - (p * t + (T(1) - p) * (T(1) - t));
    alpha_t = alpha >= 0 ? a * t + (T(1) - a) * (T(1) - t) : T(1);
  };
  for (int64_t i = 0; i < n; ++i) {
    T at, p, q, bce;
    terms(x.data()[i], targets.data()[i], at, p, q, bce);
    out.data()[i] = at * std::pow(q, gm) * bce;
  }
  return record("sigmoid_focal_loss", out, {logits}, [x, targets, gm, terms, n](const Tensor<T>& g, auto& in) {
    auto dx = Tensor<T>::empty(x.shape());
    for (int64_t i = 0; i < n; ++i) {
      const T t = targets.data()[i];
      T at, p, q, bce;
      terms(x.data()[i], t, at, p, q, bce);
      // d/dx [q^gamma * bce] = q^gamma (p - t) - gamma q^(gamma-1) (2t - 1) p (1 - p) bce
      const T q_pow = std::pow(q, gm);
      const T q_pow_m1 = q > T(0) ? std::pow(q, gm - T(1)) : (gm == T(1) ? T(1) : T(0));
      dx.data()[i] = g.data()[i] * at * (q_pow * (p - t) - gm * q_pow_m1 * (T(2) * t - T(1)) * p * (T(1) - p) * bce);
    }
    in.add(0, std::move(dx));
  });
}

}  // namespace detr
