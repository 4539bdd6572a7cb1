// Stopping and resuming is bit-exact with dropout on: training two epochs straight gives the
// same bytes (weights, buffers, optimizer state, random streams) as one epoch, a checkpoint, a
// fresh process's worth of objects built from another seed, and the second epoch. For DETR and
// each Deformable DETR variant, with shuffling, augmentation and two loader workers.
#include "data_helpers.hpp"
#include "detr/data/fashion_det.hpp"
#include "detr/data/loader.hpp"
#include "detr/data/transforms.hpp"
#include "detr/io/checkpoint.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/schedule.hpp"
#include "detr/train/trainer.hpp"
#include "helpers.hpp"
#include "tiny_detectors.hpp"

using namespace detr;
using detr::test::same_bits;

namespace {
using test::TinyDetr;
using Plain = test::TinyDeformable;
using Refine = test::TinyDeformableRefine;
using TwoStage = test::TinyDeformableTwoStage;

// Six FashionDet canvases, made once for the whole file.
const CocoDataset& dataset() {
  static test::TempDir dir;
  static const CocoDataset ds = [] {
    FashionDetConfig cfg;
    cfg.train_images = 6;
    cfg.val_images = 0;
    cfg.max_items = 3;
    cfg.seed = 3;
    make_fashion_det(dir.str(), cfg);
    return CocoDataset(dir / "annotations/instances_train.json", dir / "train");
  }();
  return ds;
}

// What a training run holds: model, criterion, AdamW, StepLR and the loader.
template <Detector M>
struct Run {
  M model;
  SetCriterion<float> criterion{M::criterion_config(), HungarianMatcher<float>(M::matcher_config())};
  std::unique_ptr<AdamW<float>> opt;
  std::unique_ptr<StepLR<float>> sched;
  DataLoader<CocoDataset> loader;

  explicit Run(uint64_t seed)
      : loader(dataset(),
               [t = compose({random_horizontal_flip(), random_resize({64, 80, 96}, 128)})](const Sample& s, Rng& r) {
                 return normalize(t(s, r));
               },
               {.batch_size = 2, .shuffle = true, .drop_last = true, .seed = 7, .num_workers = 2}) {
    Rng rng(seed);
    model.init(rng);
    model.set_dropout(0.1);
    opt = std::make_unique<AdamW<float>>(detector_param_groups(model, 1e-3, 1e-3),
                                         AdamWOptions{.lr = 1e-3, .weight_decay = 1e-4});
    sched = std::make_unique<StepLR<float>>(*opt, 1);
  }
  void epoch(int64_t e) {
    train_one_epoch(model, criterion, *opt, loader, e, TrainOptions{.clip_max_norm = 0.1});
    sched->step();
  }
};

template <Detector M>
void require_bit_exact_resume() {
  test::TempDir dir;
  Run<M> straight(1);
  straight.epoch(0);
  straight.epoch(1);

  const std::string ckpt = dir / "epoch_0001.safetensors";
  {
    Run<M> first(1);
    first.epoch(0);
    io::save_checkpoint(ckpt, first.model, {first.opt.get(), first.sched.get()});
  }
  Run<M> resumed(2);  // another seed: everything that matters must come from the checkpoint
  io::load_checkpoint(ckpt, resumed.model, {resumed.opt.get(), resumed.sched.get()});
  resumed.epoch(1);

  auto a = state_dict(straight.model), b = state_dict(resumed.model);
  for (auto& [name, t] : a) {
    INFO(name);
    REQUIRE(same_bits(t, b.at(name)));
  }
  auto sa = random_streams(straight.model), sb = random_streams(resumed.model);
  REQUIRE(sa.size() == sb.size());
  REQUIRE(!sa.empty());
  for (size_t k = 0; k < sa.size(); ++k) REQUIRE(sa[k]->state() == sb[k]->state());
  const auto names = straight.opt->state_names();
  for (size_t i = 0; i < straight.opt->num_params(); ++i)
    for (size_t n = 0; n < names.size(); ++n)
      if (straight.opt->state(i).buffers[n].defined()) {
        INFO("optimizer state " << i << " " << names[n]);
        REQUIRE(same_bits(straight.opt->state(i).buffers[n], resumed.opt->state(i).buffers[n]));
      }
}
}  // namespace

TEST_CASE("Rng::state round-trips mid-stream, the cached normal included", "[resume][rng]") {
  Rng a(42);
  for (int i = 0; i < 1000; ++i) a.next_u64();
  a.normal();  // leaves a spare normal cached
  Rng b(7);
  REQUIRE(b.set_state(a.state()));
  REQUIRE(a.normal() == b.normal());
  for (int i = 0; i < 100; ++i) REQUIRE(a.next_u64() == b.next_u64());
  REQUIRE_FALSE(b.set_state({1, 2}));
  REQUIRE_FALSE(b.set_state(std::vector<uint64_t>(10, 3)));
}

TEST_CASE("resume is bit-exact with dropout: DETR", "[resume]") { require_bit_exact_resume<TinyDetr>(); }
TEST_CASE("resume is bit-exact with dropout: Deformable DETR", "[resume]") { require_bit_exact_resume<Plain>(); }
TEST_CASE("resume is bit-exact with dropout: + box refinement", "[resume]") { require_bit_exact_resume<Refine>(); }
TEST_CASE("resume is bit-exact with dropout: + two-stage", "[resume]") { require_bit_exact_resume<TwoStage>(); }
