// Vision ops at ResNet-50 / DETR backbone shapes (batch 2, a 512x512 image): conv2d (stem, 3x3,
// 1x1, the 2048 -> 256 input projection), max_pool2d, batch_norm (training and frozen),
// group_norm(32) and nearest mask resizing. Forward alone and forward + backward (all grads).
// The PyTorch twin is reference/vision.py; both print medians in ms under the same case names.
#include <benchmark/benchmark.h>

#include "detr/core/rng.hpp"
#include "detr/ops/batch_norm.hpp"
#include "detr/ops/conv.hpp"
#include "detr/ops/group_norm.hpp"
#include "detr/ops/interpolate.hpp"
#include "detr/ops/pool.hpp"

namespace {
using detr::Shape;
using detr::Tensor;
using detr::Var;

// Times f(x) (and its backward with a fixed upstream gradient) on a random input.
template <class F>
void time_op(benchmark::State& s, const Shape& in, std::vector<Var<float>> params, bool backward, F f) {
  detr::Rng rng(0);
  Var<float> x(rng.normal_tensor<float>(in), backward);
  Tensor<float> seed;
  {
    detr::NoGrad ng;
    seed = rng.normal_tensor<float>(f(x).shape());
  }
  for (auto _ : s) {
    if (backward) {
      auto y = f(x);
      y.backward(seed);
      x.zero_grad();
      for (auto& p : params) p.zero_grad();
    } else {
      detr::NoGrad ng;
      benchmark::DoNotOptimize(f(x).value().data());
    }
  }
}

void conv(benchmark::State& s, Shape in, Shape w, int stride, int pad, bool backward) {
  detr::Rng rng(1);
  Var<float> wv(rng.normal_tensor<float>(w, 0.0, 0.05), true);
  time_op(s, in, {wv}, backward, [&](const Var<float>& x) { return detr::conv2d(x, wv, Var<float>(), stride, pad); });
}

#define CONV_CASE(name, in, w, stride, pad)                                                    \
  void BM_vision_##name##_forward(benchmark::State& s) { conv(s, in, w, stride, pad, false); } \
  void BM_vision_##name##_forward_backward(benchmark::State& s) { conv(s, in, w, stride, pad, true); } \
  BENCHMARK(BM_vision_##name##_forward)->Unit(benchmark::kMillisecond)->UseRealTime();        \
  BENCHMARK(BM_vision_##name##_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();

CONV_CASE(conv_stem_7x7s2, (Shape{2, 3, 512, 512}), (Shape{64, 3, 7, 7}), 2, 3)
CONV_CASE(conv_3x3_256, (Shape{2, 256, 32, 32}), (Shape{256, 256, 3, 3}), 1, 1)
CONV_CASE(conv_3x3s2_128, (Shape{2, 128, 128, 128}), (Shape{128, 128, 3, 3}), 2, 1)
CONV_CASE(conv_1x1_1024_256, (Shape{2, 1024, 32, 32}), (Shape{256, 1024, 1, 1}), 1, 0)
CONV_CASE(conv_input_proj_2048_256, (Shape{2, 2048, 16, 16}), (Shape{256, 2048, 1, 1}), 1, 0)

void pool(benchmark::State& s, bool backward) {
  time_op(s, {2, 64, 256, 256}, {}, backward, [](const Var<float>& x) { return detr::max_pool2d(x, 3, 2, 1); });
}
void bn(benchmark::State& s, bool training, bool backward) {
  Var<float> w(Tensor<float>::ones({64}), training), b(Tensor<float>::zeros({64}), training);
  auto rm = Tensor<float>::zeros({64}), rv = Tensor<float>::ones({64});
  time_op(s, {2, 64, 256, 256}, {w, b}, backward,
          [&](const Var<float>& x) { return detr::batch_norm(x, rm, rv, w, b, training); });
}
void gn(benchmark::State& s, bool backward) {
  Var<float> w(Tensor<float>::ones({256}), true), b(Tensor<float>::zeros({256}), true);
  time_op(s, {2, 256, 64, 64}, {w, b}, backward, [&](const Var<float>& x) { return detr::group_norm(x, 32, w, b); });
}
void BM_vision_maxpool_3x3s2_forward(benchmark::State& s) { pool(s, false); }
void BM_vision_maxpool_3x3s2_forward_backward(benchmark::State& s) { pool(s, true); }
void BM_vision_batch_norm_train_forward(benchmark::State& s) { bn(s, true, false); }
void BM_vision_batch_norm_train_forward_backward(benchmark::State& s) { bn(s, true, true); }
void BM_vision_batch_norm_frozen_forward(benchmark::State& s) { bn(s, false, false); }
void BM_vision_batch_norm_frozen_forward_backward(benchmark::State& s) { bn(s, false, true); }
void BM_vision_group_norm_32_forward(benchmark::State& s) { gn(s, false); }
void BM_vision_group_norm_32_forward_backward(benchmark::State& s) { gn(s, true); }
void BM_vision_interpolate_mask_forward(benchmark::State& s) {
  auto m = Tensor<float>::zeros({2, 512, 512});
  for (auto _ : s) benchmark::DoNotOptimize(detr::interpolate_nearest(m, 16, 16).data());
}
BENCHMARK(BM_vision_maxpool_3x3s2_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_maxpool_3x3s2_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_batch_norm_train_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_batch_norm_train_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_batch_norm_frozen_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_batch_norm_frozen_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_group_norm_32_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_group_norm_32_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_vision_interpolate_mask_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
