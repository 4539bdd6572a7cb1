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
// once, as torch's CPU kernels do with Python scalars; tensors stay in T. With the roundings of
// torch's kernels reproduced (adamw_block), float results equal torch 1.13's bit for bit
// (tests/reference/make_optim_steps.py).
#include <algorithm>
#include <cmath>
#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "detr/core/parallel.hpp"
#include "detr/optim/optimizer.hpp"

namespace detr {

namespace internal {

// The scalars of one AdamW step, rounded to T once (torch passes Python floats to its kernels).
template <class T>
struct AdamWScalars {
  T decay, b1, one_minus_b1, b2, one_minus_b2, bc2_sqrt, neg_step_size, eps;
};

// root[i] = sqrt(v[i]), IEEE-exact like torch's. A plain std::sqrt loop does not vectorise:
// without -fno-math-errno each call keeps a branch that sets errno on negative inputs (and v >= 0
// here), so x86 builds use the vector square-root instructions directly.
template <class T>
void sqrt_block(int64_t n, const T* v, T* root) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(root + i, _mm512_sqrt_ps(_mm512_loadu_ps(v + i)));
  else
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(root + i, _mm512_sqrt_pd(_mm512_loadu_pd(v + i)));
#elif defined(__AVX__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(root + i, _mm256_sqrt_ps(_mm256_loadu_ps(v + i)));
  else
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(root + i, _mm256_sqrt_pd(_mm256_loadu_pd(v + i)));
#endif
  for (; i < n; ++i) root[i] = std::sqrt(v[i]);
}

// One block of elements, in three passes so that every rounding is torch's: its AVX2 kernels
// (checked bit for bit against torch 1.13) compute m = fma(g, 1 - beta1, m * beta1),
// v = fma((1 - beta2) * g, g, v * beta2), round p * (1 - lr * wd) on its own (a separate
// kernel), and add (-step_size * m) / denom without fusing. One loop would let the compiler
// fuse p * decay into the final add; a pass boundary (through memory) stops that, and the square
// roots get their own pass (sqrt_block). A block stays in cache across the passes.
inline constexpr int64_t kAdamWBlock = 2048;

template <class T>
void adamw_block(int64_t n, T* w, const T* g, T* m, T* v, const AdamWScalars<T>& s) {
  T root[kAdamWBlock];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    w[i] = w[i] * s.decay;
    m[i] = std::fma(g[i], s.one_minus_b1, m[i] * s.b1);
    v[i] = std::fma(s.one_minus_b2 * g[i], g[i], v[i] * s.b2);
  }
  sqrt_block(n, v, root);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] + (s.neg_step_size * m[i]) / (root[i] / s.bc2_sqrt + s.eps);
}

// Blocks on all threads for large tensors. Elements are independent: the same bits for any
// thread count.
template <class T>
void adamw_update(int64_t n, T* w, const T* g, T* m, T* v, const AdamWScalars<T>& s) {
  const int64_t blocks = (n + kAdamWBlock - 1) / kAdamWBlock;
  parallel_for_if(n >= kOptimParallelMin, blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * kAdamWBlock, len = std::min(kAdamWBlock, n - lo);
      adamw_block(len, w + lo, g + lo, m + lo, v + lo, s);
    }
  });
}

}  // namespace internal

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
      internal::AdamWScalars<T> s{T(1 - g.lr * g.weight_decay),
                                  T(opt_.beta1), T(1 - opt_.beta1),
                                  T(opt_.beta2), T(1 - opt_.beta2),
                                  T(std::sqrt(bias_correction2)),
                                  T(-(g.lr / bias_correction1)),
                                  T(opt_.eps)};
      internal::adamw_update(p.var->numel(), p.var->mutable_value().data(), p.var->grad().data(),
                             m.data(), v.data(), s);
    });
  }

 private:
  AdamWOptions opt_;
};

}  // namespace detr
