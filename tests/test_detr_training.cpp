// Training DETR end to end on a few FashionDet images: 20 AdamW steps of the full pipeline
// (data -> model -> matcher -> criterion -> backward -> clip -> step) must drive the loss down,
// and a checkpoint must reload into a freshly built model with bit-identical outputs.
#include <numeric>

#include "data_helpers.hpp"
#include "detr/data/batch.hpp"
#include "detr/data/coco.hpp"
#include "detr/data/fashion_det.hpp"
#include "detr/data/transforms.hpp"
#include "detr/io/checkpoint.hpp"
#include "detr/models/detr.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/clip.hpp"
#include "detr/optim/schedule.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
using TinyBackbone = Joiner<ResNet<18, 16, float, BackboneNorm::Trainable>, PositionEmbeddingSine<16>, 1>;
using TinyDetr = Detr<TinyBackbone, 10, 32, 4, 64, 1, 2, 10>;

std::vector<Batch> tiny_fashion_det(const test::TempDir& dir) {
  FashionDetConfig cfg;
  cfg.train_images = 4;
  cfg.val_images = 0;
  cfg.max_items = 3;
  cfg.seed = 11;
  make_fashion_det(dir.str(), cfg);
  CocoDataset ds(dir / "annotations/instances_train.json", dir / "train");
  REQUIRE(ds.num_classes() == 10);
  std::vector<TensorSample> samples;
  for (int64_t i = 0; i < ds.size(); ++i) samples.push_back(normalize(ds.get(i)));
  return {collate({samples[0], samples[1]}), collate({samples[2], samples[3]})};
}
}  // namespace

TEST_CASE("20 DETR training steps on FashionDet decrease the loss; checkpoints reload exactly", "[detr_model][training]") {
  test::TempDir dir;
  const auto batches = tiny_fashion_det(dir);
  TinyDetr model;
  Rng rng(5);
  model.init(rng);
  model.set_dropout(0.0);
  train(model);
  SetCriterion<float> criterion(TinyDetr::criterion_config(), HungarianMatcher<float>(TinyDetr::matcher_config()));
  AdamW<float> opt(detector_param_groups(model, 1e-3, 1e-3), {.lr = 1e-3, .weight_decay = 1e-4});
  StepLR<float> sched(opt, 100);

  std::vector<double> losses;
  for (int step = 0; step < 20; ++step) {
    const Batch& batch = batches[size_t(step % 2)];
    // 1. forward  2. match + loss  3. backward  4. clip + step
    DetectorOutput<float> out = model.forward(Var<float>(batch.images), batch.mask);
    Losses<float> l = criterion(out.layers, box_targets(batch.targets), out.encoder_ptr());
    REQUIRE(std::isfinite(l.total.item()));
    losses.push_back(l.total.item());
    opt.zero_grad();
    l.total.backward();
    clip_grad_norm(named_parameters(model), 0.1);
    opt.step();
  }
  // Each batch's loss, first two steps vs last two: the model must be fitting both.
  const double first = losses[0] + losses[1], last = losses[18] + losses[19];
  INFO("losses: first " << losses[0] << ", " << losses[1] << "; last " << losses[18] << ", " << losses[19]);
  REQUIRE(last < 0.8 * first);

  const std::string ckpt = dir / "tiny_detr.safetensors";
  io::save_checkpoint(ckpt, model, {&opt, &sched}, {{"model", "tiny_detr"}});
  TinyDetr reloaded;
  Rng other(99);
  reloaded.init(other);
  AdamW<float> opt2(detector_param_groups(reloaded, 1e-3, 1e-3), {.lr = 1e-3, .weight_decay = 1e-4});
  StepLR<float> sched2(opt2, 100);
  auto meta = io::load_checkpoint(ckpt, reloaded, {&opt2, &sched2});
  REQUIRE(meta.at("model") == "tiny_detr");
  eval(model);
  eval(reloaded);
  NoGrad no_grad;
  auto a = model.forward(Var<float>(batches[0].images), batches[0].mask);
  auto b = reloaded.forward(Var<float>(batches[0].images), batches[0].mask);
  REQUIRE_ALLCLOSE(a.final().logits.value(), b.final().logits.value(), 0, 0);
  REQUIRE_ALLCLOSE(a.final().boxes.value(), b.final().boxes.value(), 0, 0);
}
