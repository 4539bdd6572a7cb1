// train: train a DETR-family detector from scratch on the CPU, evaluate it with the COCO
// metrics, and keep checkpoints, a metrics log and a chart.
//
//   ./build/examples/train --model detr --epochs 50 --out runs/detr
//   ./build/examples/train --model detr --epochs 60 --out runs/detr --resume runs/detr/epoch_0050.safetensors
//
// Without --data it trains on FashionDet (data/fashion_det, generated on first use from the
// Fashion-MNIST files of Debian's dataset-fashion-mnist package). Any folder in COCO layout
// works (annotations/instances_{train,val}.json and train/, val/, or the 2017 names) as long
// as it has the number of classes the model type was built for (examples/models.hpp).
//
// It is the reference's main.py + engine.py, step by step:
//   1. data      train split with augmentation, val split resized, both on loader threads
//   2. model     the --model type, initialised from --seed
//   3. training  set criterion (Hungarian matcher + losses), AdamW in parameter groups, StepLR
//   4. resume    model, optimiser and schedule from a checkpoint, bit-exact
//   5. epochs    train_one_epoch, lr step, COCO evaluation every --eval-every epochs,
//                checkpoint, metrics.jsonl and chart.png in --out
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "detr/data/coco_folder.hpp"
#include "detr/data/fashion_det.hpp"
#include "detr/data/loader.hpp"
#include "detr/optim/adamw.hpp"
#include "detr/optim/schedule.hpp"
#include "detr/train/chart.hpp"
#include "detr/train/metrics_log.hpp"
#include "detr/train/progress.hpp"
#include "detr/train/trainer.hpp"
#include "main_guard.hpp"
#include "models.hpp"

using namespace detr;
namespace fs = std::filesystem;

struct Args {
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  std::string model = "detr";
  std::string data = "data/fashion_det";
  std::string out = "runs/train";
  std::string resume;
  int64_t epochs = 50, batch = 8, lr_drop = -1, eval_every = 1, max_steps = -1, train_images = -1,
          val_images = -1, image_size = 160, keep = 3;
  double lr = 1e-4, lr_backbone = 1e-4, weight_decay = 1e-4, clip = 0.1, dropout = 0.1;
  uint64_t seed = 42;
  int threads = 0, workers = 1;
  bool overwrite = false;
};

// Runs every epoch of `a` for the model type M; returns the exit status.
template <Detector M>
int run(const Args& a) {
  using T = typename M::Scalar;

  // 1. Data. FashionDet is generated when the default folder is missing; the splits are cut to
  //    --train-images / --val-images for quick runs.
  if (a.data == "data/fashion_det" && !fs::exists(fs::path(a.data) / "annotations")) {
    std::printf("generating FashionDet in %s (8000 train + 1000 val canvases, a few minutes)...\n", a.data.c_str());
    std::fflush(stdout);
    make_fashion_det(a.data, FashionDetConfig{});
  }
  const CocoDataset train_set = load_coco_split(a.data, "train", a.train_images);
  const CocoDataset val_set = load_coco_split(a.data, "val", a.val_images);
  DETR_CHECK(train_set.num_classes() == M::num_classes,
             "model '" << a.model << "' is built for " << M::num_classes << " classes, "
                       << train_set.annotation_file() << " has " << train_set.num_classes()
                       << " (add a type alias with its class count in examples/models.hpp)");
  DETR_CHECK(train_set.size() > 0, train_set.annotation_file() << " has no images");
  // The reference drops a last, smaller batch: BatchNorm trains on batch statistics.
  LoaderOptions train_opt{.batch_size = a.batch, .shuffle = true, .drop_last = train_set.size() >= a.batch,
                          .seed = a.seed, .num_workers = a.workers};
  LoaderOptions val_opt{.batch_size = a.batch, .shuffle = false, .drop_last = false, .seed = a.seed,
                        .num_workers = a.workers};
  DataLoader train_loader(train_set, examples::to_model_input(examples::train_augmentation(a.image_size)), train_opt);
  DataLoader val_loader(val_set, examples::to_model_input(examples::eval_resize(a.image_size)), val_opt);
  std::printf("data: %s: %lld train images (%lld batches of %lld), %lld val images, %lld classes\n",
              a.data.c_str(), (long long)train_set.size(), (long long)train_loader.num_batches(),
              (long long)a.batch, (long long)val_set.size(), (long long)train_set.num_classes());

  // 2. Model. Every parameter is trained (no pretrained backbone to protect).
  Rng rng(a.seed);
  M model;
  model.init(rng);
  model.set_dropout(a.dropout);
  std::printf("model: %s, %lld parameters\n", a.model.c_str(), (long long)num_parameters(model));

  // 3. Training objects: the criterion with the model's own matcher and loss settings, AdamW
  //    with the backbone (and deformable sampling offsets) in their own lr groups, StepLR.
  SetCriterion<T> criterion(M::criterion_config(), HungarianMatcher<T>(M::matcher_config()));
  AdamWOptions adamw;
  adamw.lr = a.lr;
  adamw.weight_decay = a.weight_decay;
  AdamW<T> optimizer(detector_param_groups(model, a.lr, a.lr_backbone), adamw);
  const int64_t lr_drop = a.lr_drop > 0 ? a.lr_drop : std::max<int64_t>(1, a.epochs * 2 / 3);
  StepLR<T> schedule(optimizer, lr_drop);

  // 4. Resume: the model, the optimiser's moments and the schedule come back exactly.
  examples::CheckpointInfo info;
  info.model = a.model;
  for (int64_t k = 0; k < train_set.num_classes(); ++k) {
    info.class_names.push_back(train_set.class_name(k));
    info.category_ids.push_back(train_set.category_id_of(k));
  }
  info.image_size = a.image_size;
  if (!a.resume.empty()) {
    const examples::CheckpointInfo saved = examples::read_checkpoint_info(a.resume);
    examples::checked_model_name(saved, a.model);
    DETR_CHECK(saved.class_names == info.class_names,
               a.resume << " was trained on classes " << nlohmann::json(saved.class_names).dump() << ", "
                        << train_set.annotation_file() << " has " << nlohmann::json(info.class_names).dump());
    io::load_checkpoint(a.resume, model, {&optimizer, &schedule});
    check_finite(model, a.resume);
    info.epoch = saved.epoch;
    info.step = saved.step;
    std::printf("resumed from %s: %lld epochs, %lld steps done\n", a.resume.c_str(), (long long)info.epoch,
                (long long)info.step);
  }

  // 5. Epochs. Checkpoints of later epochs in --out belong to another run: this one would
  //    overwrite some of them and leave the others to look newer than its own. The metrics log
  //    drops records of epochs this run redoes.
  fs::create_directories(a.out);
  std::vector<std::string> later;
  for (const auto& [epoch, path] : examples::epoch_checkpoints(a.out))
    if (epoch > info.epoch) later.push_back(path.filename().string());
  if (!later.empty()) {
    DETR_CHECK(a.overwrite, a.out << " already holds checkpoints of later epochs than this run starts from (epoch "
                                  << info.epoch << "): " << nlohmann::json(later).dump()
                                  << "; choose another --out, or pass --overwrite to delete them");
    for (const auto& f : later) fs::remove(fs::path(a.out) / f);
    std::printf("--overwrite: deleted %zu checkpoints of later epochs from %s\n", later.size(), a.out.c_str());
  }
  std::vector<fs::path> written;  // this run's checkpoints, oldest first: the only ones --keep prunes
  MetricsLog log = MetricsLog::resume(a.out + "/metrics.jsonl", info.epoch + 1);
  Evaluation last_eval;
  bool evaluated = false;
  int64_t steps_this_run = 0;
  for (int64_t epoch = info.epoch + 1; epoch <= a.epochs; ++epoch) {
    TrainOptions topt;
    topt.clip_max_norm = a.clip;
    topt.max_steps = a.max_steps < 0 ? -1 : a.max_steps - steps_this_run;
    const int64_t steps = topt.max_steps < 0 ? train_loader.num_batches()
                                              : std::min(topt.max_steps, train_loader.num_batches());
    ProgressBar bar("epoch " + std::to_string(epoch) + "/" + std::to_string(a.epochs), steps);
    // The loader's epoch number fixes the shuffle and the augmentation draws.
    EpochStats st = train_one_epoch(model, criterion, optimizer, train_loader, epoch - 1, topt, &bar);
    bar.finish();
    schedule.step();
    steps_this_run += st.steps;
    info.epoch = epoch;
    info.step += st.steps;
    const bool stop = a.max_steps >= 0 && steps_this_run >= a.max_steps;

    nlohmann::json rec = {{"epoch", epoch},
                          {"step", info.step},
                          {"lr", st.lr},
                          {"train_loss", st.loss},
                          {"train_loss_ce", st.loss_ce},
                          {"train_loss_bbox", st.loss_bbox},
                          {"train_loss_giou", st.loss_giou},
                          {"train_class_error", st.class_error},
                          {"train_grad_norm", st.grad_norm},
                          {"train_images_per_s", st.images_per_second()},
                          {"epoch_seconds", st.seconds}};
    evaluated = epoch % a.eval_every == 0 || epoch == a.epochs || stop;
    if (evaluated) {
      ProgressBar ebar("eval", val_loader.num_batches());
      last_eval = evaluate(model, val_loader, val_set, &ebar);
      ebar.finish();
      const auto& s = last_eval.coco.stats;
      std::printf("epoch %lld: loss %.4f, val AP %.3f AP50 %.3f AP75 %.3f AR100 %.3f\n", (long long)epoch, st.loss,
                  s[0], s[1], s[2], s[8]);
      rec.update(examples::coco_metrics_json(last_eval.coco, "val_"));
    } else {
      std::printf("epoch %lld: loss %.4f\n", (long long)epoch, st.loss);
    }
    log.write(rec);

    // Checkpoint of this epoch; only the newest --keep are kept.
    char name[64];
    std::snprintf(name, sizeof name, "epoch_%04lld.safetensors", (long long)epoch);
    const std::string ckpt = (fs::path(a.out) / name).string();
    io::save_checkpoint(ckpt, model, {&optimizer, &schedule}, examples::checkpoint_metadata(info));
    std::printf("saved %s\n", ckpt.c_str());
    written.push_back(ckpt);
    while (a.keep > 0 && written.size() > size_t(a.keep)) {
      fs::remove(written.front());
      written.erase(written.begin());
    }

    // The chart is redrawn from the whole log, so a resumed run's chart shows every epoch.
    std::vector<double> ep, loss, ep_eval, ap, ap50;
    for (const auto& r : read_metrics_log(log.path())) {
      ep.push_back(r.value("epoch", 0.0));
      loss.push_back(r.value("train_loss", NAN));
      if (r.contains("val_AP")) {
        ep_eval.push_back(r.value("epoch", 0.0));
        ap.push_back(r.value("val_AP", NAN));
        ap50.push_back(r.value("val_AP50", NAN));
      }
    }
    write_chart(a.out + "/chart.png",
                {{"train loss (all decoder layers, weighted)", {{"loss", ep, loss, label_colour(3)}}},
                 {"val COCO AP by epoch",
                  {{"AP", ep_eval, ap, label_colour(0)}, {"AP50", ep_eval, ap50, label_colour(1)}}}});
    if (stop) {
      std::printf("stopping: --max-steps %lld reached\n", (long long)a.max_steps);
      break;
    }
  }

  // 6. The final COCO numbers (evaluated now if the run had nothing left to train).
  if (!evaluated) {
    last_eval = evaluate(model, val_loader, val_set);
  }
  std::printf("\n");
  last_eval.coco.print_summary(std::cout);
  last_eval.coco.print_per_class(std::cout);
  std::printf("final COCO mAP@[.50:.95] = %.4f (AP50 %.4f) on %lld %s images after %lld epochs\n", last_eval.map(),
              last_eval.coco.stats[1], (long long)last_eval.images, a.data.c_str(), (long long)info.epoch);
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Train a DETR-family detector on FashionDet (or any COCO-layout dataset) on the CPU.\n"
               "Writes DIR/epoch_NNNN.safetensors, DIR/metrics.jsonl and DIR/chart.png (--out DIR)."};
  app.add_option("--model", a.model, "Detector type (configurations in examples/models.hpp)")
      ->check(CLI::IsMember(examples::kModelNames))
      ->capture_default_str();
  app.add_option("--data", a.data,
                 "Dataset folder in COCO layout (annotations/instances_{train,val}.json + train/, val/); "
                 "the default FashionDet folder is generated when missing")
      ->capture_default_str();
  app.add_option("--out", a.out, "Output folder: checkpoints, metrics.jsonl, chart.png")->capture_default_str();
  app.add_option("--epochs", a.epochs, "Train up to this epoch (a resumed run continues to it)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", a.batch, "Images per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", a.lr, "AdamW learning rate of the transformer and heads")->capture_default_str();
  app.add_option("--lr-backbone", a.lr_backbone,
                 "Learning rate of the ResNet (the reference uses 1e-5 on an ImageNet backbone; here it "
                 "trains from scratch, so the same as --lr)")
      ->capture_default_str();
  app.add_option("--lr-drop", a.lr_drop, "Multiply the learning rates by 0.1 every this many epochs "
                                         "(default: 2/3 of --epochs; give it when resuming with another --epochs)")
      ->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", a.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  app.add_option("--clip", a.clip, "Clip the gradients' global L2 norm to this (0: no clipping)")
      ->capture_default_str();
  app.add_option("--dropout", a.dropout, "Transformer dropout")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--image-size", a.image_size,
                 "Shorter image side for evaluation; training draws it from this +-32 px in 16 px steps")
      ->check(CLI::Range(32, 4096))
      ->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the initialisation, dropout, shuffling and augmentation")
      ->capture_default_str();
  app.add_option("--threads", a.threads, "Threads for the model (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--workers", a.workers, "Data loader threads (decode, augment, collate)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--eval-every", a.eval_every, "Evaluate on the val split every N epochs (and after the last)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--resume", a.resume, "Continue from this checkpoint (model, optimiser, schedule, epoch)")
      ->check(CLI::ExistingFile);
  app.add_option("--keep", a.keep,
                 "Keep the newest N epoch checkpoints this run writes (0: all); files of other runs are never deleted")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--overwrite", a.overwrite,
               "Delete checkpoints of later epochs than this run starts from in --out (else: refuse to start)");
  app.add_option("--max-steps", a.max_steps,
                 "Stop after this many optimiser steps in this run (the partial epoch counts as done); "
                 "for quick runs")
      ->check(CLI::PositiveNumber);
  app.add_option("--train-images", a.train_images, "Train on the first N images of the train split only")
      ->check(CLI::PositiveNumber);
  app.add_option("--val-images", a.val_images, "Evaluate on the first N images of the val split only")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-image-pixels", a.max_image_pixels,
                 "Refuse images whose header claims more pixels than this (a decompression bomb guard; "
                 "the default is PIL's limit)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_max_image_pixels(a.max_image_pixels);
  if (a.threads > 0) detr::set_num_threads(a.threads);

  return examples::guarded_main([&] { return examples::with_model(a.model, [&]<class M>() { return run<M>(a); }); });
}
