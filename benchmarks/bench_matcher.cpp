// Matching: (a) linear_sum_assignment alone on random cost matrices of DETR sizes, (b) the whole
// HungarianMatcher (costs + assignment) for 2 images x 300 queries x 20 targets, 91 classes.
#include <benchmark/benchmark.h>

#include "detr/core/rng.hpp"
#include "detr/matcher/matcher.hpp"

namespace {
void BM_lsa(benchmark::State& s) {
  const int64_t nr = s.range(0), nc = s.range(1);
  detr::Rng rng(0);
  std::vector<double> cost(size_t(nr * nc));
  for (auto& c : cost) c = rng.uniform();
  for (auto _ : s) {
    auto a = detr::linear_sum_assignment(cost.data(), nr, nc);
    benchmark::DoNotOptimize(a.cols.data());
  }
}
BENCHMARK(BM_lsa)->Args({100, 20})->Args({300, 50})->Args({900, 100})->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_matcher(benchmark::State& s) {
  const int64_t B = 2, Q = 300, T = 20, C = 92;
  detr::Rng rng(1);
  auto logits = rng.normal_tensor<float>({B, Q, C});
  auto boxes = detr::Tensor<float>::empty({B, Q, 4});
  for (int64_t i = 0; i < B * Q; ++i) {
    float* b = boxes.data() + 4 * i;
    b[0] = float(rng.uniform(0.2, 0.8)), b[1] = float(rng.uniform(0.2, 0.8));
    b[2] = float(rng.uniform(0.05, 0.4)), b[3] = float(rng.uniform(0.05, 0.4));
  }
  std::vector<detr::BoxTarget<float>> targets;
  for (int64_t b = 0; b < B; ++b) {
    detr::BoxTarget<float> t{detr::Tensor<int64_t>::empty({T}), detr::Tensor<float>::empty({T, 4})};
    for (int64_t j = 0; j < T; ++j) {
      t.labels.data()[j] = rng.randint(0, C - 2);
      float* bx = t.boxes.data() + 4 * j;
      bx[0] = float(rng.uniform(0.2, 0.8)), bx[1] = float(rng.uniform(0.2, 0.8));
      bx[2] = float(rng.uniform(0.05, 0.4)), bx[3] = float(rng.uniform(0.05, 0.4));
    }
    targets.push_back(t);
  }
  detr::HungarianMatcher<float> matcher;  // DETR's costs: class 1, bbox 5, giou 2
  for (auto _ : s) {
    auto m = matcher(logits, boxes, targets);
    benchmark::DoNotOptimize(m.data());
  }
}
BENCHMARK(BM_matcher)->Unit(benchmark::kMicrosecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
