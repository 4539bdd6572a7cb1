// MultiheadAttention<256, 8> at DETR's shapes: encoder self-attention (B=2, L=850: a 800x1066
// image at stride 32 is 25x34 = 850 tokens) and decoder cross-attention (100 queries x 850 keys).
// Forward alone and forward + backward (all input and parameter gradients).
#include <benchmark/benchmark.h>

#include "detr/nn/multihead_attention.hpp"

namespace {
constexpr int kD = 256, kH = 8;

void run(benchmark::State& s, int64_t Lq, int64_t Lk, bool backward) {
  detr::Rng rng(0);
  detr::MultiheadAttention<kD, kH> mha;
  mha.init(rng);
  detr::eval(mha);  // no dropout: same work as torch's need_weights=False eval path
  detr::Var<float> q(rng.normal_tensor<float>({2, Lq, kD}), true);
  detr::Var<float> k(rng.normal_tensor<float>({2, Lk, kD}), true);
  detr::Var<float> v(rng.normal_tensor<float>({2, Lk, kD}), true);
  auto seed = detr::Tensor<float>::ones({2, Lq, kD});
  for (auto _ : s) {
    auto y = mha.forward(q, Lq == Lk ? q : k, v);
    if (backward) {
      y.backward(seed);
      detr::zero_grad(mha);
      q.zero_grad(), k.zero_grad(), v.zero_grad();
    }
    benchmark::DoNotOptimize(y.value().data());
  }
}

void BM_mha_encoder_forward(benchmark::State& s) { run(s, 850, 850, false); }
void BM_mha_encoder_forward_backward(benchmark::State& s) { run(s, 850, 850, true); }
void BM_mha_decoder_cross_forward(benchmark::State& s) { run(s, 100, 850, false); }
void BM_mha_decoder_cross_forward_backward(benchmark::State& s) { run(s, 100, 850, true); }
BENCHMARK(BM_mha_encoder_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mha_encoder_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mha_decoder_cross_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mha_decoder_cross_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
