#pragma once
// Matrix products: matmul (a @ b), matmul_nt (a @ b^T, the attention score product) and
// linear (x @ W^T + b, torch.nn.functional.linear). Large GEMMs are OpenMP-parallel inside
// (ops/gemm.hpp); batches of small products run in parallel instead.

#include "detr/core/parallel.hpp"
#include "detr/autograd/var.hpp"
#include "detr/core/rng.hpp"
#include "detr/gpu/blas.hpp"
#include "detr/ops/gemm.hpp"

namespace detr {

namespace internal {

// `batch` independent GEMMs with fixed strides between operands.
template <class T>
void batched_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A,
                  int64_t sa, const T* B, int64_t sb, T* C, int64_t sc, T beta = T(0)) {
  // Large products use Eigen's own threads; many small ones are spread over threads here.
  // (and tiny batches, under ~1 MFLOP in all, stay on the calling thread).
  bool outer = batch > 1 && M * N * K < (int64_t(1) << 21) && batch * M * N * K > (int64_t(1) << 19);
  parallel_for_if(outer, batch, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) gemm(ta, tb, M, N, K, A + i * sa, B + i * sb, C + i * sc, beta);
  });
}

// Sums over the rows of a row-major [R, N] buffer -> [N]: partial sums over fixed row ranges,
// added in range order (the same bits for any thread count).
template <class T>
Tensor<T> column_sums(const T* g, int64_t R, int64_t N) {
  const int64_t ranges = R * N > (1 << 16) ? std::min<int64_t>(R, 16) : 1;
  auto partial = Tensor<T>::zeros({ranges, N});
  parallel_chunks(ranges, [&](int64_t c) {
    T* acc = partial.data() + c * N;
    for (int64_t r = c * R / ranges; r < (c + 1) * R / ranges; ++r) {
      const T* row = g + r * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) acc[j] += row[j];
    }
  });
  auto sums = Tensor<T>::zeros({N});
  for (int64_t c = 0; c < ranges; ++c)
    for (int64_t j = 0; j < N; ++j) sums.data()[j] += partial.data()[c * N + j];
  return sums;
}

struct MatmulDims {
  int64_t batch, M, N, K;
  bool shared_b;  // b is one [K,N] (or [N,K]) matrix used for every batch entry
  Shape out;
};

// a [..., M, K] with b [K, N] (shared) or b [..., K, N] (same leading dims); tb reads b as [.., N, K].
inline MatmulDims matmul_dims(const Shape& a, const Shape& b, bool tb, const char* op) {
  DETR_CHECK(a.rank() >= 2 && b.rank() >= 2,
             op << ": needs rank >= 2 operands, got a " << a << " and b " << b);
  int64_t M = a.dim(-2), K = a.dim(-1);
  int64_t bK = tb ? b.dim(-1) : b.dim(-2), N = tb ? b.dim(-2) : b.dim(-1);
  DETR_CHECK(K == bK, op << ": inner dimensions differ: a " << a << " vs b " << b
                         << (tb ? " (b transposed)" : ""));
  MatmulDims d{a.prod(0, a.rank() - 2), M, N, K, b.rank() == 2, a.sub(0, a.rank() - 1)};
  if (!d.shared_b)
    DETR_CHECK(b.rank() == a.rank() && b.sub(0, b.rank() - 2) == a.sub(0, a.rank() - 2),
               op << ": batch dimensions differ: a " << a << " vs b " << b);
  d.out.push_back(N);
  return d;
}

// `batch` products C = op(A) op(B) on device D (sb = 0: one B for all), strides in elements.
template <class T, class D>
void device_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t sa, const T* B,
                 int64_t sb, T* C, int64_t sc) {
  if constexpr (is_cuda<D>) gpu::gemm(ta, tb, M, N, K, A, B, C, batch, sa, sb, sc);
  else if (batch == 1) gemm(ta, tb, M, N, K, A, B, C);
  else batched_gemm(batch, ta, tb, M, N, K, A, sa, B, sb, C, sc);
}

// Sums over the rows of a row-major [R, N] tensor -> [N].
template <class T, class D>
Tensor<T, D> device_column_sums(const Tensor<T, D>& g, int64_t R, int64_t N) {
  if constexpr (is_cuda<D>) {
    auto sums = Tensor<T, D>::empty({N});
    const bool reduced[2] = {true, false};
    gpu::reduce_sum(g.data(), sums.data(), gpu::Reduction::of(Shape{R, N}, reduced));
    return sums;
  } else {
    return column_sums(g.data(), R, N);
  }
}

template <class T, class D>
Var<T, D> matmul_impl(const Var<T, D>& a, const Var<T, D>& b, bool tb, const char* op) {
  const Tensor<T, D> av = a.value(), bv = b.value();
  MatmulDims d = matmul_dims(av.shape(), bv.shape(), tb, op);
  auto out = Tensor<T, D>::empty(d.out);
  int64_t sb = d.shared_b ? 0 : d.K * d.N;
  if (d.shared_b)  // one big GEMM over all leading dims
    device_gemm<T, D>(1, false, tb, d.batch * d.M, d.N, d.K, av.data(), 0, bv.data(), 0, out.data(), 0);
  else
    device_gemm<T, D>(d.batch, false, tb, d.M, d.N, d.K, av.data(), d.M * d.K, bv.data(), sb, out.data(), d.M * d.N);
  return record(op, out, {a, b}, [av, bv, d, tb, sb](const Tensor<T, D>& g, auto& in) {
    const int64_t B = d.batch, M = d.M, N = d.N, K = d.K;
    if (in.wants(0)) {  // dA = g @ op(B)^T
      auto ga = Tensor<T, D>::empty(av.shape());
      if (d.shared_b) device_gemm<T, D>(1, false, !tb, B * M, K, N, g.data(), 0, bv.data(), 0, ga.data(), 0);
      else device_gemm<T, D>(B, false, !tb, M, K, N, g.data(), M * N, bv.data(), sb, ga.data(), M * K);
      in.add(0, std::move(ga));
    }
    if (in.wants(1)) {  // dB = A^T @ g (or g^T @ A when b was read transposed)
      auto gb = Tensor<T, D>::empty(bv.shape());
      if (d.shared_b) {
        if (tb) device_gemm<T, D>(1, true, false, N, K, B * M, g.data(), 0, av.data(), 0, gb.data(), 0);
        else device_gemm<T, D>(1, true, false, K, N, B * M, av.data(), 0, g.data(), 0, gb.data(), 0);
      } else if (tb) {
        device_gemm<T, D>(B, true, false, N, K, M, g.data(), M * N, av.data(), M * K, gb.data(), N * K);
      } else {
        device_gemm<T, D>(B, true, false, K, N, M, av.data(), M * K, g.data(), M * N, gb.data(), K * N);
      }
      in.add(1, std::move(gb));
    }
  });
}

}  // namespace internal

// a [..., M, K] @ b [K, N] or [..., K, N] -> [..., M, N]
template <class T, class D>
Var<T, D> matmul(const Var<T, D>& a, const Var<T, D>& b) {
  return internal::matmul_impl(a, b, false, "matmul");
}

// a [..., M, K] @ b^T with b [N, K] or [..., N, K] -> [..., M, N]
template <class T, class D>
Var<T, D> matmul_nt(const Var<T, D>& a, const Var<T, D>& b) {
  return internal::matmul_impl(a, b, true, "matmul_nt");
}

namespace internal {

// linear, and with `relu` relu(linear): the clamp runs in the product's store, and the backward
// masks the incoming gradient by out > 0 (relu()'s mask, as in > 0 exactly when out > 0).
// With relu and drop_p > 0 also dropout, with dropout()'s mask for `seed`, applied in place: the
// output y alone then serves the backward (an element passes its gradient, times 1 / (1 - p),
// exactly where y > 0: kept and positive), so neither the mask nor the pre-dropout values are kept.
template <class T, class D>
Var<T, D> linear_impl(const char* op, const Var<T, D>& x, const Var<T, D>& weight, const Var<T, D>& bias, bool relu,
                      double drop_p = 0.0, uint64_t seed = 0) {
  DETR_CHECK(weight.rank() == 2, op << ": weight must be [out, in], got " << weight.shape());
  DETR_CHECK(x.rank() >= 1 && x.dim(-1) == weight.dim(1),
             op << ": input " << x.shape() << " does not end in in_features " << weight.dim(1) << " of weight "
                << weight.shape());
  const int64_t Out = weight.dim(0), In = weight.dim(1), R = x.numel() / std::max<int64_t>(In, 1);
  Shape os = x.shape();
  os[os.rank() - 1] = Out;
  const Tensor<T, D> xv = x.value(), wv = weight.value();
  auto out = Tensor<T, D>::empty(os);
  if (bias.defined())
    DETR_CHECK(bias.rank() == 1 && bias.dim(0) == Out, op << ": bias " << bias.shape() << " vs out_features " << Out);
  if constexpr (is_cuda<D>) {
    gpu::gemm(false, true, R, Out, In, xv.data(), wv.data(), out.data());
    internal::DropoutMask<T> drop;
    if (relu && drop_p > 0.0) drop = {seed, dropout_threshold(drop_p), T(1.0 / (1.0 - drop_p)), true};
    if (bias.defined() || relu)
      gpu::bias_act(out.data(), bias.defined() ? bias.value().data() : nullptr, out.numel(), Out, relu, drop);
  } else {
    gemm_bias(false, true, R, Out, In, xv.data(), In, wv.data(), In, out.data(), Out,
              bias.defined() ? bias.value().data() : nullptr, relu);
    if (relu && drop_p > 0.0) dropout_apply(seed, drop_p, out.data(), out.data(), out.numel());  // dropout()'s mask
  }
  std::vector<Var<T, D>> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  Tensor<T, D> kept = relu ? out : Tensor<T, D>();
  const T pass = drop_p > 0.0 ? T(1.0 / (1.0 - drop_p)) : T(1);  // gradient factor where kept > 0
  return record(op, out, std::move(inputs), [xv, wv, kept, pass, R, Out, In](const Tensor<T, D>& g_out, auto& in) {
    Tensor<T, D> g = g_out;
    if (kept.defined()) {  // through the relu (and dropout): g * (out > 0 ? pass : 0), as relu() multiplies
      g = Tensor<T, D>::empty(g_out.shape());
      const T *pg = g_out.data(), *py = kept.data();
      T* pm = g.data();
      const int64_t n = g.numel();
      const T factor = pass;
      if constexpr (is_cuda<D>) gpu::relu_grad(pg, py, pm, n, factor);
      else parallel_for_simd(n > (1 << 16), n, [=](int64_t i) { pm[i] = pg[i] * (py[i] > T(0) ? factor : T(0)); });
    }
    if (in.wants(0)) {
      auto gx = Tensor<T, D>::empty(xv.shape());
      device_gemm<T, D>(1, false, false, R, In, Out, g.data(), 0, wv.data(), 0, gx.data(), 0);
      in.add(0, std::move(gx));
    }
    if (in.wants(1)) {
      auto gw = Tensor<T, D>::empty(wv.shape());
      device_gemm<T, D>(1, true, false, Out, In, R, g.data(), 0, xv.data(), 0, gw.data(), 0);
      in.add(1, std::move(gw));
    }
    if (in.wants(2)) {
      in.add(2, device_column_sums(g, R, Out));
    }
  });
}

}  // namespace internal

// x [..., In] @ weight^T [Out, In] + bias [Out] -> [..., Out]   (bias may be undefined)
template <class T, class D>
Var<T, D> linear(const Var<T, D>& x, const Var<T, D>& weight, const Var<T, D>& bias = Var<T, D>()) {
  return internal::linear_impl("linear", x, weight, bias, false);
}

// relu(linear(x, weight, bias)) in one op: the clamp is applied as the product is stored (the FFN's
// first layer: one pass less over its [tokens, F] activations each way).
template <class T, class D>
Var<T, D> linear_relu(const Var<T, D>& x, const Var<T, D>& weight, const Var<T, D>& bias = Var<T, D>()) {
  return internal::linear_impl("linear_relu", x, weight, bias, true);
}

// dropout(relu(linear(x, weight, bias)), p, training, rng) in one op, with the same mask and
// values as those three (it draws from rng as dropout() does). Only the output is kept for the
// backward, which is one pass (the FFN's first layer: one [tokens, F] tensor and three passes less).
template <class T, class D>
Var<T, D> linear_relu_dropout(const Var<T, D>& x, const Var<T, D>& weight, const Var<T, D>& bias, double p,
                              bool training, Rng& rng) {
  DETR_CHECK(p >= 0.0 && p < 1.0, "linear_relu_dropout: probability must be in [0, 1), got " << p);
  if (!training || p == 0.0) return linear_relu(x, weight, bias);
  return internal::linear_impl("linear_relu_dropout", x, weight, bias, true, p, rng.next_u64());
}

}  // namespace detr
