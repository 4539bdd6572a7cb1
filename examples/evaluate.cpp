// evaluate: score a trained checkpoint on a COCO-layout dataset with the COCO metrics, printed
// as pycocotools prints them (12 numbers) and then per class.
//
//   ./build/examples/evaluate --checkpoint runs/detr/epoch_0050.safetensors
//   ./build/examples/evaluate --checkpoint ckpt.safetensors --data data/fashion_det --results dets.json
//
// The checkpoint says which model type it holds, the classes it was trained on and its image
// size (train writes them as metadata), so nothing but the file is needed to rebuild the model.
//   1. read the checkpoint's identity, check it against the dataset
//   2. build the model type, load the weights
//   3. run it over the split (eval transform, loader threads), COCO-evaluate, print
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "detr/data/coco_folder.hpp"
#include "detr/data/loader.hpp"
#include "detr/train/progress.hpp"
#include "detr/train/trainer.hpp"
#include "main_guard.hpp"
#include "models.hpp"

using namespace detr;

struct Args {
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  std::string checkpoint, model, data = "data/fashion_det", split = "val", results, metrics;
  int64_t batch = 8, images = -1, image_size = 0;
  int threads = 0, workers = 1;
  double min_map = -1;
};

template <Detector M>
int run(const Args& a, const examples::CheckpointInfo& info) {
  // 1. The dataset must have the classes the model was trained on, in the same label order.
  const CocoDataset data = load_coco_split(a.data, a.split, a.images);
  std::vector<std::string> names;
  for (int64_t k = 0; k < data.num_classes(); ++k) names.push_back(data.class_name(k));
  DETR_CHECK(names == info.class_names, info.path << " was trained on classes " << nlohmann::json(info.class_names).dump()
                                                  << ", " << data.annotation_file() << " has "
                                                  << nlohmann::json(names).dump());

  // 2. The model, in eval mode once evaluate() runs.
  M model;
  io::load_checkpoint(info.path, model);
  check_finite(model, info.path);
  const int64_t size = a.image_size > 0 ? a.image_size : info.image_size;
  std::printf("%s: '%s' model after %lld epochs; %lld %s images at shorter side %lld\n", info.path.c_str(),
              info.model.c_str(), (long long)info.epoch, (long long)data.size(), a.split.c_str(), (long long)size);

  // 3. Detections on every image, then COCOeval.
  LoaderOptions opt{.batch_size = a.batch, .shuffle = false, .drop_last = false, .seed = 0, .num_workers = a.workers};
  DataLoader loader(data, examples::to_model_input(examples::eval_resize(size)), opt);
  ProgressBar bar("eval", loader.num_batches());
  Evaluation ev = evaluate(model, loader, data, &bar);
  bar.finish();
  std::printf("%lld images in %.1f s (%.1f img/s), %zu detections\n\n", (long long)ev.images, ev.seconds,
              ev.seconds > 0 ? double(ev.images) / ev.seconds : 0.0, ev.detections.size());
  ev.coco.print_summary(std::cout);
  std::printf("\nper class (AP@[.50:.95], all areas, 100 detections):\n");
  ev.coco.print_per_class(std::cout);
  if (!a.results.empty()) {
    save_detections(a.results, ev.detections);
    std::printf("detections written to %s (COCO results format)\n", a.results.c_str());
  }
  if (!a.metrics.empty()) {
    nlohmann::json rec = {{"checkpoint", info.path}, {"model", info.model},     {"epoch", info.epoch},
                          {"split", a.split},        {"images", ev.images},     {"image_size", size},
                          {"seconds", ev.seconds}};
    rec.update(examples::coco_metrics_json(ev.coco, ""));
    std::ofstream f(a.metrics);
    DETR_CHECK(f << rec.dump() << "\n", "evaluate: cannot write " << a.metrics);
    std::printf("metrics written to %s\n", a.metrics.c_str());
  }
  if (ev.map() < a.min_map) {
    std::printf("FAILED: mAP %.4f is below --min-map %.4f\n", ev.map(), a.min_map);
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Evaluate a checkpoint written by train on a COCO-layout dataset (COCO bbox metrics)."};
  app.add_option("--checkpoint", a.checkpoint, "Checkpoint written by train (epoch_NNNN.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--data", a.data, "Dataset folder in COCO layout")->capture_default_str();
  app.add_option("--split", a.split, "Split to evaluate: val or train")->capture_default_str();
  app.add_option("--model", a.model, "Expected model type (default: whatever the checkpoint holds)")
      ->check(CLI::IsMember(examples::kModelNames));
  app.add_option("--batch", a.batch, "Images per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--images", a.images, "Evaluate the first N images of the split only")->check(CLI::PositiveNumber);
  app.add_option("--image-size", a.image_size, "Shorter image side (default: the one the checkpoint was trained at)")
      ->check(CLI::Range(32, 4096));
  app.add_option("--results", a.results, "Also write the detections as a COCO results json");
  app.add_option("--metrics", a.metrics, "Also write the 12 numbers and per-class AP as one JSON object");
  app.add_option("--threads", a.threads, "Threads for the model (0: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--workers", a.workers, "Data loader threads")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--min-map", a.min_map, "Exit with status 1 if mAP@[.50:.95] is below this");
  app.add_option("--max-image-pixels", a.max_image_pixels,
                 "Refuse images whose header claims more pixels than this (a decompression bomb guard; "
                 "the default is PIL's limit)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_max_image_pixels(a.max_image_pixels);
  if (a.threads > 0) detr::set_num_threads(a.threads);

  return examples::guarded_main([&] {
    const examples::CheckpointInfo info = examples::read_checkpoint_info(a.checkpoint);
    return examples::with_model(examples::checked_model_name(info, a.model),
                                [&]<class M>() { return run<M>(a, info); });
  });
}
