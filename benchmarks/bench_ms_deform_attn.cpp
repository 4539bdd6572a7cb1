// ms_deform_attn (the op alone) at the shapes of a 512x512 image with strides 8/16/32/64:
// levels 64x64, 32x32, 16x16, 8x8 (S = 5440), B = 2, H = 8, D = 32, L = 4, P = 4; encoder
// (every position queries, Q = 5440) and decoder (Q = 300 queries). Samples fall around each
// query's reference point (offsets ~ N(0, 2 pixels)), as trained models put them; the PyTorch
// twin benchmarks/reference/msda.py draws them the same way. Forward alone (no graph) and
// forward + backward (gradients of value, locations and weights).
#include <benchmark/benchmark.h>

#include "detr/core/rng.hpp"
#include "detr/ops/ms_deform_attn.hpp"

namespace {
constexpr int64_t kB = 2, kH = 8, kD = 32, kL = 4, kP = 4;
constexpr int64_t kSizes[kL] = {64, 32, 16, 8};

struct Inputs {
  detr::Tensor<int64_t> shapes = detr::Tensor<int64_t>::empty({kL, 2}), starts = detr::Tensor<int64_t>::empty({kL});
  detr::Tensor<float> value, loc, attn;
};

Inputs make_inputs(bool encoder) {
  detr::Rng rng(0);
  Inputs in;
  int64_t S = 0;
  for (int64_t l = 0; l < kL; ++l) {
    in.shapes.data()[2 * l] = in.shapes.data()[2 * l + 1] = kSizes[l];
    in.starts.data()[l] = S;
    S += kSizes[l] * kSizes[l];
  }
  const int64_t Q = encoder ? S : 300;
  in.value = rng.normal_tensor<float>({kB, S, kH, kD});
  // Reference points: the pixel centres of each query's own level (encoder), uniform (decoder).
  auto ref = rng.uniform_tensor<float>({Q, 2}, 0, 1);
  if (encoder)
    for (int64_t l = 0, q = 0; l < kL; ++l)
      for (int64_t y = 0; y < kSizes[l]; ++y)
        for (int64_t x = 0; x < kSizes[l]; ++x, ++q) {
          ref.data()[2 * q] = (x + 0.5f) / kSizes[l];
          ref.data()[2 * q + 1] = (y + 0.5f) / kSizes[l];
        }
  in.loc = rng.normal_tensor<float>({kB, Q, kH, kL, kP, 2}, 0, 2);
  float* pl = in.loc.data();
  for (int64_t i = 0; i < in.loc.numel() / 2; ++i) {
    const int64_t q = (i / (kH * kL * kP)) % Q, l = (i / kP) % kL;
    pl[2 * i] = ref.data()[2 * q] + pl[2 * i] / kSizes[l];
    pl[2 * i + 1] = ref.data()[2 * q + 1] + pl[2 * i + 1] / kSizes[l];
  }
  in.attn = rng.uniform_tensor<float>({kB, Q, kH, kL, kP}, 0, 1);
  float* pa = in.attn.data();
  for (int64_t r = 0; r < in.attn.numel() / (kL * kP); ++r) {
    float sum = 0;
    for (int64_t j = 0; j < kL * kP; ++j) sum += pa[r * kL * kP + j];
    for (int64_t j = 0; j < kL * kP; ++j) pa[r * kL * kP + j] /= sum;
  }
  return in;
}

void run(benchmark::State& s, bool encoder, bool backward) {
  const Inputs in = make_inputs(encoder);
  detr::Var<float> value(in.value, true), loc(in.loc, true), attn(in.attn, true);
  const auto seed = detr::Tensor<float>::ones({kB, in.loc.dim(1), kH * kD});
  for (auto _ : s) {
    if (backward) {
      auto y = detr::ms_deform_attn(value, in.shapes, in.starts, loc, attn);
      y.backward(seed);
      benchmark::DoNotOptimize(value.grad().data());
      value.zero_grad(), loc.zero_grad(), attn.zero_grad();
    } else {
      detr::NoGrad ng;
      auto y = detr::ms_deform_attn(value, in.shapes, in.starts, loc, attn);
      benchmark::DoNotOptimize(y.value().data());
    }
  }
}

void BM_msda_encoder_forward(benchmark::State& s) { run(s, true, false); }
void BM_msda_encoder_forward_backward(benchmark::State& s) { run(s, true, true); }
void BM_msda_decoder_forward(benchmark::State& s) { run(s, false, false); }
void BM_msda_decoder_forward_backward(benchmark::State& s) { run(s, false, true); }
BENCHMARK(BM_msda_encoder_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msda_encoder_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msda_decoder_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_msda_decoder_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
