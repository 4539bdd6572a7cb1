// The CUDA backend's kernel bodies (detr/gpu/kernels/) run through Thrust's sequential host
// system and compared with the CPU ops on the same inputs: the logic the GPU runs (index
// geometry, reductions, row math, fused epilogues) is checked on every CI run, GPU or not.
// Per-element maps share the CPU op's functor and must agree bit for bit; sums run in another
// order and agree to rounding.
#include <thrust/system/cpp/execution_policy.h>

#include "detr/gpu/kernels/elementwise.hpp"
#include "detr/gpu/kernels/rows.hpp"
#include "detr/ops/dropout.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/layer_norm.hpp"
#include "detr/ops/linalg.hpp"
#include "detr/ops/reduce.hpp"
#include "detr/ops/shape.hpp"
#include "detr/ops/softmax.hpp"
#include "helpers.hpp"

using namespace detr;
using detr::test::allclose;
using detr::test::same_bits;

namespace {

const auto host = thrust::cpp::par;

Tensor<float> randf(const Shape& s, uint64_t seed, float lo = -2, float hi = 2) {
  Rng rng(seed);
  return rng.uniform_tensor<float>(s, lo, hi);
}

// The kernels' y = f(x) and g * f'(x, y) against the CPU op `op` (forward and backward).
template <class F, class Op>
void check_unary(F f, Op op, const Tensor<float>& x_in, const char* name) {
  INFO(name);
  Var<float> x(x_in.clone(), true);
  Var<float> y = op(x);
  auto g = randf(x_in.shape(), 99);
  y.backward(g);
  const int64_t n = x_in.numel();
  auto y_k = Tensor<float>::empty(x_in.shape()), dx_k = Tensor<float>::empty(x_in.shape());
  gpu::kernels::for_each_index(host, n, gpu::kernels::MapBody<float, F>{x_in.data(), y_k.data(), f});
  gpu::kernels::for_each_index(
      host, n, gpu::kernels::MapGradBody<float, F>{g.data(), x_in.data(), y_k.data(), dx_k.data(), f});
  CHECK(same_bits(y_k, y.value()));
  CHECK(same_bits(dx_k, x.grad()));
}

// The kernels' broadcasting binary at the geometry the CUDA op builds.
template <class F>
Tensor<float> kernel_binary(const Tensor<float>& a, const Tensor<float>& b, F f) {
  const Shape s = internal::broadcast_shapes(a.shape(), b.shape(), "test");
  auto out = Tensor<float>::empty(s);
  const internal::BroadcastLoop<2> loop(
      s, {internal::broadcast_strides(a.shape(), s), internal::broadcast_strides(b.shape(), s)});
  gpu::kernels::for_each_index(host, out.numel(),
                               gpu::kernels::BinaryBody<float, F>{a.data(), b.data(), out.data(),
                                                                  internal::strided_geometry(loop), f});
  return out;
}

Tensor<float> kernel_sum(const Tensor<float>& x, const std::vector<bool>& mask, const Shape& out_shape) {
  bool reduced[Shape::kMaxRank] = {};
  for (size_t d = 0; d < mask.size(); ++d) reduced[d] = mask[d];
  const auto geo = gpu::Reduction::of(x.shape(), reduced);
  auto out = Tensor<float>::empty(out_shape);
  REQUIRE(geo.outputs == out.numel());
  std::vector<double> scratch(size_t(geo.outputs * geo.slices()));
  gpu::kernels::reduce_sum(host, x.data(), out.data(), geo, scratch.data());
  return out;
}

}  // namespace

TEST_CASE("gpu kernels (host): unary maps equal the CPU ops bit for bit", "[gpu_kernels]") {
  auto x = randf({3, 37}, 1);
  x.data()[0] = 0.0f;  // the kinks of relu / abs / clamp
  x.data()[1] = -0.0f;
  x.data()[2] = 1.0f;  // clamp's bound
  check_unary(math::Relu{}, [](const Var<float>& v) { return relu(v); }, x, "relu");
  check_unary(math::Gelu{}, [](const Var<float>& v) { return gelu(v); }, x, "gelu");
  check_unary(math::Sigmoid{}, [](const Var<float>& v) { return sigmoid(v); }, x, "sigmoid");
  check_unary(math::Tanh{}, [](const Var<float>& v) { return detr::tanh(v); }, x, "tanh");
  check_unary(math::Exp{}, [](const Var<float>& v) { return detr::exp(v); }, x, "exp");
  check_unary(math::Square{}, [](const Var<float>& v) { return square(v); }, x, "square");
  check_unary(math::Abs{}, [](const Var<float>& v) { return detr::abs(v); }, x, "abs");
  check_unary(math::Clamp<float>{-1.0f, 1.0f}, [](const Var<float>& v) { return clamp(v, -1.0f, 1.0f); }, x, "clamp");
  check_unary(math::AddScalar<float>{0.5f}, [](const Var<float>& v) { return v + 0.5f; }, x, "add_scalar");
  check_unary(math::MulScalar<float>{-3.0f}, [](const Var<float>& v) { return v * -3.0f; }, x, "mul_scalar");
  auto pos = randf({3, 37}, 2, 0.01f, 3.0f);
  check_unary(math::Log{}, [](const Var<float>& v) { return detr::log(v); }, pos, "log");
  check_unary(math::Sqrt{}, [](const Var<float>& v) { return detr::sqrt(v); }, pos, "sqrt");
  auto unit = randf({3, 37}, 3, -0.1f, 1.1f);  // outside [0, 1] too: inverse_sigmoid clamps
  unit.data()[0] = 0.0f;
  unit.data()[1] = 1.0f;
  check_unary(math::InverseSigmoid<float>{1e-5f}, [](const Var<float>& v) { return inverse_sigmoid(v); }, unit,
              "inverse_sigmoid");
}

TEST_CASE("gpu kernels (host): broadcasting binaries equal the CPU ops", "[gpu_kernels]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}}, {{2, 3, 4}, {3, 1}}, {{2, 1, 4}, {1, 3, 1}},
      {{5, 1}, {1, 6}},       {{7}, {}},         {{2, 3, 1, 5}, {3, 4, 1}}};
  uint64_t seed = 10;
  for (const auto& [sa, sb] : cases) {
    INFO("a " << sa << " b " << sb);
    auto a = randf(sa, seed++), b = randf(sb, seed++, 0.5f, 2.0f);
    Var<float> va(a), vb(b);
    CHECK(same_bits(kernel_binary(a, b, math::Plus{}), add(va, vb).value()));
    CHECK(same_bits(kernel_binary(a, b, math::Minus{}), sub(va, vb).value()));
    CHECK(same_bits(kernel_binary(a, b, math::Times{}), mul(va, vb).value()));
    CHECK(same_bits(kernel_binary(a, b, math::Divide{}), div(va, vb).value()));
  }
}

TEST_CASE("gpu kernels (host): reductions equal the CPU sums", "[gpu_kernels]") {
  struct Case {
    Shape shape;
    std::vector<int> dims;
  };
  // Small and large reduced counts (one pass, and sliced partial sums), leading / trailing /
  // interleaved dims, size-1 dims, and an empty input.
  const std::vector<Case> cases = {{{4, 5, 6}, {1}},       {{4, 5, 6}, {0, 2}},   {{4, 5, 6}, {0, 1, 2}},
                                   {{3, 1, 7}, {0}},       {{300, 257}, {0}},     {{2, 40000}, {1}},
                                   {{100000}, {0}},        {{6, 1, 4, 9}, {1, 3}}, {{0, 5}, {0}}};
  uint64_t seed = 50;
  for (const auto& c : cases) {
    INFO("x " << c.shape << " summed over " << c.dims.size() << " dims, first " << c.dims[0]);
    auto x = randf(c.shape, seed++);
    auto cpu = sum(Var<float>(x), c.dims).value();
    auto mask = internal::reduced_mask("sum", x.shape(), c.dims);
    auto got = kernel_sum(x, mask, cpu.shape());
    std::string why;
    CHECK(allclose(got, cpu, 1e-5, 1e-4, &why));
    INFO(why);
  }
}

TEST_CASE("gpu kernels (host): sum_to geometry (broadcast gradients) equals the CPU's", "[gpu_kernels]") {
  const std::vector<std::pair<Shape, Shape>> cases = {{{2, 3, 4}, {4}}, {{2, 3, 4}, {3, 1}}, {{2, 3, 4}, {}},
                                                      {{5, 6}, {5, 1}}, {{2, 3, 4}, {1, 3, 4}}};
  uint64_t seed = 80;
  for (const auto& [gs, target] : cases) {
    INFO("g " << gs << " to " << target);
    auto g = randf(gs, seed++);
    auto cpu = internal::sum_to(g, target);
    const auto st = internal::broadcast_strides(target, gs);
    std::vector<bool> mask(size_t(gs.rank()));
    for (int d = 0; d < gs.rank(); ++d) mask[d] = st[d] == 0;
    CHECK(allclose(kernel_sum(g, mask, target), cpu, 1e-5, 1e-5));
  }
}

TEST_CASE("gpu kernels (host): softmax, log_softmax and layer_norm rows equal the CPU ops", "[gpu_kernels]") {
  auto x = randf({6, 33}, 7, -4, 4);
  for (int j = 0; j < 33; ++j) x.data()[2 * 33 + j] = -INFINITY;  // a fully masked row: zeros
  x.data()[3 * 33 + 5] = -INFINITY;
  auto g = randf({6, 33}, 8);
  {
    Var<float> v(x.clone(), true);
    auto y = softmax(v);
    y.backward(g);
    auto yk = Tensor<float>::empty(x.shape()), dk = Tensor<float>::empty(x.shape());
    gpu::kernels::for_each_index(host, 6, gpu::kernels::SoftmaxRowBody<float>{x.data(), yk.data(), 33});
    gpu::kernels::for_each_index(host, 6,
                                 gpu::kernels::SoftmaxGradRowBody<float>{yk.data(), g.data(), dk.data(), 33, 1.0f});
    CHECK(allclose(yk, y.value(), 1e-5, 1e-7));
    CHECK(allclose(dk, v.grad(), 1e-4, 1e-6));
    for (int j = 0; j < 33; ++j) CHECK(yk.data()[2 * 33 + j] == 0.0f);
  }
  auto xf = randf({6, 33}, 9, -4, 4);  // log_softmax: finite rows
  {
    Var<float> v(xf.clone(), true);
    auto y = log_softmax(v);
    y.backward(g);
    auto yk = Tensor<float>::empty(xf.shape()), dk = Tensor<float>::empty(xf.shape());
    gpu::kernels::for_each_index(host, 6, gpu::kernels::LogSoftmaxRowBody<float>{xf.data(), yk.data(), 33});
    gpu::kernels::for_each_index(host, 6,
                                 gpu::kernels::LogSoftmaxGradRowBody<float>{yk.data(), g.data(), dk.data(), 33});
    CHECK(allclose(yk, y.value(), 1e-5, 1e-6));
    CHECK(allclose(dk, v.grad(), 1e-4, 1e-6));
  }
  {
    const int64_t R = 6, D = 33;
    auto w = randf({D}, 10, 0.5f, 1.5f), b = randf({D}, 11);
    Var<float> v(xf.clone(), true), vw(w, true), vb(b, true);
    auto y = layer_norm(v, vw, vb);
    y.backward(g);
    auto yk = Tensor<float>::empty(xf.shape()), dk = Tensor<float>::empty(xf.shape());
    auto mean = Tensor<float>::empty({R}), rstd = Tensor<float>::empty({R});
    auto dw = Tensor<float>::empty({D}), db = Tensor<float>::empty({D});
    gpu::kernels::for_each_index(host, R, gpu::kernels::LayerNormRowBody<float>{xf.data(), w.data(), b.data(),
                                                                                  yk.data(), mean.data(), rstd.data(),
                                                                                  D, 1e-5f});
    gpu::kernels::for_each_index(host, R, gpu::kernels::LayerNormInputGradRowBody<float>{
                                              g.data(), xf.data(), w.data(), mean.data(), rstd.data(), dk.data(), D});
    gpu::kernels::for_each_index(host, D, gpu::kernels::LayerNormParamGradBody<float>{
                                              g.data(), xf.data(), mean.data(), rstd.data(), dw.data(), db.data(), R, D});
    CHECK(allclose(yk, y.value(), 1e-5, 1e-5));
    CHECK(allclose(dk, v.grad(), 1e-4, 1e-5));
    CHECK(allclose(dw, vw.grad(), 1e-4, 1e-5));
    CHECK(allclose(db, vb.grad(), 1e-5, 1e-5));
  }
}

TEST_CASE("gpu kernels (host): linear's bias / relu / dropout epilogue equals the CPU op", "[gpu_kernels]") {
  const int64_t R = 5, In = 7, Out = 40;
  auto x = randf({R, In}, 20), w = randf({Out, In}, 21), b = randf({Out}, 22);
  Rng rng_cpu(5);
  Var<float> vx(x), vw(w), vb(b);
  auto cpu = linear_relu_dropout(vx, vw, vb, 0.3, true, rng_cpu).value();
  // The kernels run after the product: the CPU's bias-free product, then the epilogue.
  auto y = linear(vx, vw).value().clone();
  Rng rng_k(5);
  const uint64_t seed = rng_k.next_u64();  // the one draw linear_relu_dropout makes
  internal::DropoutMask<float> drop{seed, internal::dropout_threshold(0.3), float(1.0 / (1.0 - 0.3)), true};
  gpu::kernels::for_each_index(host, y.numel(), gpu::kernels::BiasActBody<float>{y.data(), b.data(), Out, true, drop});
  CHECK(allclose(y, cpu, 1e-5, 1e-6));
  int64_t zeros = 0;
  for (int64_t i = 0; i < y.numel(); ++i) {
    CHECK((y.data()[i] == 0.0f) == (cpu.data()[i] == 0.0f));  // the same mask
    zeros += y.data()[i] == 0.0f;
  }
  CHECK(zeros > 0);
  CHECK(zeros < y.numel());
}

TEST_CASE("gpu kernels (host): strided copies of the layout ops equal the CPU ops", "[gpu_kernels]") {
  auto x = randf({2, 3, 4, 5}, 40);
  auto copy = [&](const Tensor<float>& src, std::vector<int64_t> src_stride, const std::vector<int64_t>& size) {
    Shape os(std::span<const int64_t>(size.data(), size.size()));
    auto out = Tensor<float>::empty(os);
    const auto geo = internal::copy_geometry(std::move(src_stride), internal::contiguous_strides(size), size);
    gpu::kernels::for_each_index(host, out.numel(), gpu::kernels::StridedCopyBody<float>{src.data(), out.data(), geo});
    return out;
  };
  // permute (3, 0, 2, 1): output dim i reads x's dim perm[i]
  const std::vector<int> perm{3, 0, 2, 1};
  const auto xs = internal::strides_of(x.shape());
  std::vector<int64_t> st, size;
  for (int p : perm) {
    st.push_back(xs[p]);
    size.push_back(x.shape()[p]);
  }
  CHECK(same_bits(copy(x, st, size), permute(Var<float>(x), perm).value()));
  // slice with a step, along a middle dim: x[:, :, 1:4:2, :] (offset 1 * 5, stride 2 * 5)
  {
    auto sliced = slice(Var<float>(x), 2, 1, 4, 2).value();
    auto out = Tensor<float>::empty(sliced.shape());
    const auto geo = internal::copy_geometry({60, 20, 10, 1}, internal::strides_of(sliced.shape()), {2, 3, 2, 5});
    gpu::kernels::for_each_index(host, out.numel(),
                                 gpu::kernels::StridedCopyBody<float>{x.data() + 5, out.data(), geo});
    CHECK(same_bits(out, sliced));
  }
  // repeat {2, 1, 3, 1, 2}: sizes interleaved [r0, s0, r1, s1, ...] with stride 0 on the repeats
  const std::vector<int64_t> reps{2, 1, 3, 1, 2};
  auto rep = repeat(Var<float>(x), reps).value();
  std::vector<int64_t> rsize, rst;
  for (int i = 0; i < 5; ++i) {
    const int64_t s = i < 1 ? 1 : x.shape()[i - 1];
    rsize.insert(rsize.end(), {reps[i], s});
    rst.insert(rst.end(), {0, i < 1 ? 0 : xs[i - 1]});
  }
  auto out = Tensor<float>::empty(rep.shape());
  const auto geo = internal::copy_geometry(rst, internal::contiguous_strides(rsize), rsize);
  gpu::kernels::for_each_index(host, out.numel(), gpu::kernels::StridedCopyBody<float>{x.data(), out.data(), geo});
  CHECK(same_bits(out, rep));
  // repeat's backward: the sum over the interleaved repeat dims (more than Shape::kMaxRank dims)
  std::vector<bool> tiled;
  for (int i = 0; i < 5; ++i) tiled.insert(tiled.end(), {true, false});
  auto cpu_sum = Tensor<float>::empty(x.shape());
  internal::sum_dims(rep.data(), rsize, tiled, cpu_sum.data());
  bool mask[10];
  for (int i = 0; i < 10; ++i) mask[i] = tiled[i];
  const auto red = gpu::Reduction::of(rsize.data(), 10, mask);
  auto k_sum = Tensor<float>::empty(x.shape());
  std::vector<double> scratch(size_t(red.outputs * red.slices()));
  gpu::kernels::reduce_sum(host, rep.data(), k_sum.data(), red, scratch.data());
  CHECK(allclose(k_sum, cpu_sum, 1e-6, 1e-6));
}

TEST_CASE("gpu kernels (host): dropout's mask equals the CPU op's", "[gpu_kernels]") {
  auto x = randf({1000}, 60);
  Rng rng(9);
  Var<float> v(x.clone(), true);
  auto y = dropout(v, 0.4, true, rng);
  auto g = randf({1000}, 61);
  y.backward(g);
  Rng again(9);
  const internal::DropoutMask<float> mask{again.next_u64(), internal::dropout_threshold(0.4), float(1.0 / 0.6), true};
  auto yk = Tensor<float>::empty({1000}), dk = Tensor<float>::empty({1000});
  gpu::kernels::for_each_index(host, 1000, gpu::kernels::DropoutBody<float>{x.data(), yk.data(), mask});
  gpu::kernels::for_each_index(host, 1000, gpu::kernels::DropoutBody<float>{g.data(), dk.data(), mask});
  CHECK(same_bits(yk, y.value()));
  CHECK(same_bits(dk, v.grad()));
}

TEST_CASE("gpu kernels (host): attention's masked softmax rows equal scale, mask, then softmax", "[gpu_kernels]") {
  const int64_t B = 2, H = 3, Lq = 4, Lk = 7;
  auto scores = randf({B * H, Lq, Lk}, 70, -3, 3);
  auto additive = randf({Lq, Lk}, 71);
  auto blocked = Tensor<uint8_t>::zeros({B * H, Lq, Lk});
  auto pad = Tensor<uint8_t>::zeros({B, Lk});
  blocked.data()[5] = blocked.data()[40] = 1;
  pad.data()[Lk + 6] = 1;  // entry 1's last key is padding
  for (int64_t j = 0; j < Lk; ++j) blocked.data()[(2 * Lq + 1) * Lk + j] = 1;  // a fully blocked row
  const float scale = 0.5f;
  auto expect = scores.clone();
  for (int64_t r = 0; r < B * H * Lq; ++r) {
    const int64_t bh = r / Lq, i = r % Lq, b = bh / H;
    for (int64_t j = 0; j < Lk; ++j) {
      float& v = expect.data()[r * Lk + j];
      v = v * scale + additive.data()[i * Lk + j];
      if (blocked.data()[r * Lk + j] || pad.data()[b * Lk + j]) v = -INFINITY;
    }
  }
  auto cpu = softmax(Var<float>(expect)).value();
  auto got = scores.clone();
  gpu::kernels::for_each_index(host, B * H * Lq,
                               gpu::kernels::AttentionSoftmaxRowBody<float>{got.data(), H, Lq, Lk, scale, blocked.data(),
                                                                            true, additive.data(), false, pad.data()});
  CHECK(allclose(got, cpu, 1e-6, 1e-7));
  for (int64_t j = 0; j < Lk; ++j) CHECK(got.data()[(2 * Lq + 1) * Lk + j] == 0.0f);
}
