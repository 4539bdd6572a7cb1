// One Deformable DETR training step without the backbone: the transformer (d 256, 8 heads, FFN
// 1024, 6 + 6 layers, 4 levels of 64x64 / 32x32 / 16x16 / 8x8 as a 512x512 image at strides
// 8..64, 4 points, 300 queries, dropout 0.1 in training mode) with the shared class / box heads
// on every decoder layer, the focal-loss SetCriterion with Hungarian matching (8 objects per
// image, B = 2), backward, and an AdamW step over every parameter. The PyTorch twin
// benchmarks/reference/deformable_step.py runs the official modules (grid_sample sampling).
#include <benchmark/benchmark.h>

#include <cmath>

#include "detr/loss/set_criterion.hpp"
#include "detr/nn/embedding.hpp"
#include "detr/nn/linear.hpp"
#include "detr/nn/mlp.hpp"
#include "detr/nn/position_encoding.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/transformer/deformable_transformer.hpp"

namespace {
using namespace detr;
constexpr int kD = 256, kQ = 300, kClasses = 91, kB = 2, kObjects = 8;
constexpr int64_t kSizes[4] = {64, 32, 16, 8};
constexpr DeformableTransformerConfig kConfig{.d_model = kD,
                                              .nhead = 8,
                                              .num_encoder_layers = 6,
                                              .num_decoder_layers = 6,
                                              .dim_feedforward = 1024,
                                              .num_feature_levels = 4,
                                              .dec_n_points = 4,
                                              .enc_n_points = 4,
                                              .two_stage = false,
                                              .two_stage_num_proposals = kQ};

// DeformableDetr's trainable part past the input projections (names as in its state_dict).
struct TransformerAndHeads {
  using Scalar = float;
  DeformableTransformer<kConfig> transformer;
  Linear<kD, kClasses> class_embed;
  MLP<kD, kD, 4, 3> bbox_embed;
  Embedding<kQ, 2 * kD> query_embed;

  void init(Rng& rng) {
    transformer.init(rng);
    class_embed.init(rng);
    class_embed.bias.mutable_value().fill_(float(-std::log(99.0)));
    bbox_embed.init(rng);
    query_embed.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("transformer", transformer);
    v.child("class_embed", class_embed);
    v.child("bbox_embed", bbox_embed);
    v.child("query_embed", query_embed);
  }
  std::vector<Predictions<float>> forward(const std::vector<Var<float>>& srcs,
                                          const std::vector<Tensor<uint8_t>>& masks,
                                          const std::vector<Var<float>>& pos) {
    auto t = transformer.forward(srcs, masks, pos, query_embed.weight);
    std::vector<Predictions<float>> out;
    for (size_t l = 0; l < t.hs.size(); ++l) {
      const Var<float>& reference = l == 0 ? t.init_reference : t.inter_references[l - 1];
      Var<float> tmp = bbox_embed.forward(t.hs[l]);
      Var<float> xy = slice(tmp, 2, 0, 2) + inverse_sigmoid(reference);
      out.push_back({class_embed.forward(t.hs[l]), sigmoid(concat({xy, slice(tmp, 2, 2, 4)}, 2))});
    }
    return out;
  }
};

void BM_deformable_step_train(benchmark::State& s) {
  Rng rng(0);
  TransformerAndHeads model;
  model.init(rng);
  train(model);
  PositionEmbeddingSine<kD / 2, float, SineNorm::Deformable> position;
  std::vector<Var<float>> srcs, pos;
  std::vector<Tensor<uint8_t>> masks;
  for (int64_t hw : kSizes) {
    masks.push_back(Tensor<uint8_t>::zeros({kB, hw, hw}));
    srcs.emplace_back(rng.normal_tensor<float>({kB, kD, hw, hw}));
    pos.push_back(position.forward(masks.back()));
  }
  std::vector<BoxTarget<float>> targets(kB);
  for (auto& t : targets) {
    t.labels = Tensor<int64_t>::empty({kObjects});
    t.boxes = Tensor<float>::empty({kObjects, 4});
    for (int i = 0; i < kObjects; ++i) {
      t.labels.data()[i] = int64_t(rng.uniform(0, kClasses)) % kClasses;
      float* b = t.boxes.data() + 4 * i;
      b[0] = float(rng.uniform(0.2, 0.8)), b[1] = float(rng.uniform(0.2, 0.8));
      b[2] = float(rng.uniform(0.05, 0.4)), b[3] = float(rng.uniform(0.05, 0.4));
    }
  }
  CriterionConfig cc;
  cc.num_classes = kClasses;
  cc.class_loss = ClassLoss::focal;
  cc.weight_ce = 2.0;
  MatcherConfig mc;
  mc.cost_class = 2.0;
  mc.class_cost = ClassCost::focal;
  SetCriterion<float> criterion(cc, HungarianMatcher<float>(mc));
  AdamW<float> opt(named_parameters(model), {.lr = 1e-4, .weight_decay = 1e-4});
  for (auto _ : s) {
    auto losses = criterion(model.forward(srcs, masks, pos), targets);
    opt.zero_grad();
    losses.total.backward();
    opt.step();
    benchmark::DoNotOptimize(losses.total.value().data());
  }
}
BENCHMARK(BM_deformable_step_train)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
