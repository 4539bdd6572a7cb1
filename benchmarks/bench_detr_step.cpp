// One DETR training step without the backbone, at DETR's size: the transformer (d 256, 8 heads,
// FFN 2048, 6 + 6 layers, dropout 0.1), 100 queries, the class and box heads, Hungarian matching
// and the set criterion with aux losses, backward, clip_grad_norm 0.1 and AdamW. B = 2 images
// whose C5 maps are 25x34 (an 800x1066 image; the second is padded from 25x28), 91 classes,
// 6 and 9 objects. benchmarks/reference/detr_step.py is the PyTorch twin (the official code).
#include <benchmark/benchmark.h>

#include "detr/models/detr.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/clip.hpp"

namespace {
constexpr int kD = 256, kClasses = 91, kQueries = 100;

// Detr without its backbone and input projection: what runs on the transformer's tokens.
struct DetrHeads {
  using Scalar = float;
  detr::DetrTransformer<kD, 8, 2048, 6, 6> transformer;
  detr::Embedding<kQueries, kD> query_embed;
  detr::Linear<kD, kClasses + 1> class_embed;
  detr::MLP<kD, kD, 4, 3> bbox_embed;
  void init(detr::Rng& rng) {
    transformer.init(rng);
    query_embed.init(rng);
    class_embed.init(rng);
    bbox_embed.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("transformer", transformer);
    v.child("query_embed", query_embed);
    v.child("class_embed", class_embed);
    v.child("bbox_embed", bbox_embed);
  }
};

detr::BoxTarget<float> random_target(detr::Rng& rng, int64_t n) {
  detr::BoxTarget<float> t;
  t.labels = detr::Tensor<int64_t>::empty({n});
  t.boxes = detr::Tensor<float>::empty({n, 4});
  for (int64_t i = 0; i < n; ++i) {
    t.labels.data()[i] = int64_t(rng.uniform(0, kClasses)) % kClasses;
    t.boxes.data()[4 * i + 0] = float(rng.uniform(0.2, 0.8));
    t.boxes.data()[4 * i + 1] = float(rng.uniform(0.2, 0.8));
    t.boxes.data()[4 * i + 2] = float(rng.uniform(0.05, 0.4));
    t.boxes.data()[4 * i + 3] = float(rng.uniform(0.05, 0.4));
  }
  return t;
}

void BM_detr_step_train_step(benchmark::State& s) {
  detr::Rng rng(0);
  DetrHeads m;
  m.init(rng);
  detr::train(m);
  constexpr int64_t B = 2, h = 25, w = 34, HW = h * w;
  auto mask = detr::Tensor<uint8_t>::zeros({B, h, w});  // [B, h, w]
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 28; x < w; ++x) mask.data()[(h + y) * w + x] = 1;
  detr::PositionEmbeddingSine<kD / 2> pos_enc;
  detr::Var<float> pos = detr::permute(detr::reshape(pos_enc.forward(mask), {B, kD, HW}), {0, 2, 1});  // [B, HW, D]
  detr::Var<float> src(rng.normal_tensor<float>({B, HW, kD}));                                        // [B, HW, D]
  auto flat_mask = mask.reshape({B, HW});
  std::vector<detr::BoxTarget<float>> targets{random_target(rng, 6), random_target(rng, 9)};
  detr::CriterionConfig cc;
  cc.num_classes = kClasses;
  detr::SetCriterion<float> criterion(cc, detr::HungarianMatcher<float>());
  auto params = detr::named_parameters(m);
  detr::AdamW<float> opt(params, {.lr = 1e-4, .weight_decay = 1e-4});
  for (auto _ : s) {
    auto out = m.transformer.forward(src, flat_mask, m.query_embed.weight, pos);
    std::vector<detr::Predictions<float>> layers;
    for (auto& hs : out.layers)
      layers.push_back({m.class_embed.forward(hs), detr::sigmoid(m.bbox_embed.forward(hs))});
    auto losses = criterion(layers, targets);
    opt.zero_grad();
    losses.total.backward();
    detr::clip_grad_norm(params, 0.1);
    opt.step();
    benchmark::DoNotOptimize(losses.total.item());
  }
}
BENCHMARK(BM_detr_step_train_step)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
