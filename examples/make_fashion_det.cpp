// make_fashion_det: write FashionDet, DETR++'s built-in detection dataset, in COCO format.
//
//   make_fashion_det --out data/fashion_det
//
// produces
//   data/fashion_det/annotations/instances_train.json   8000 canvases from Fashion-MNIST train
//   data/fashion_det/annotations/instances_val.json     1000 canvases from Fashion-MNIST test
//   data/fashion_det/train/000001.png ...
//   data/fashion_det/val/000001.png ...
//
// Each canvas (128..192 px a side) holds 1 to 8 tinted garments on a textured background, with
// boxes overlapping by IoU <= 0.3 at most. The same --seed always gives the same files,
// whatever --threads is. Read the result with detr::CocoDataset like any COCO dataset.
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>

#include "detr/data/fashion_det.hpp"
#include "main_guard.hpp"

int main(int argc, char** argv) {
  // 1. Flags. Every field of FashionDetConfig can be set from the command line.
  detr::FashionDetConfig cfg;
  std::string out = "fashion_det";
  std::string mnist_dir = detr::kFashionMnistDir;
  CLI::App app{"Generate the FashionDet detection dataset (COCO json + PNG) from Fashion-MNIST"};
  app.add_option("-o,--out", out, "Output folder (created); gets annotations/, train/ and val/")
      ->capture_default_str();
  app.add_option("--mnist-dir", mnist_dir,
                 "Folder with Fashion-MNIST's IDX .gz files (Debian package dataset-fashion-mnist)")
      ->capture_default_str();
  app.add_option("--train", cfg.train_images, "Number of training canvases (drawn from the "
                                              "60000 Fashion-MNIST train images)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--val", cfg.val_images, "Number of validation canvases (drawn from the "
                                          "10000 Fashion-MNIST test images)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--seed", cfg.seed, "Random seed; the same seed gives identical files")
      ->capture_default_str();
  app.add_option("--threads", cfg.threads, "Worker threads rendering and writing PNGs")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-items", cfg.max_items, "Most garments on one canvas (at least 1)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-iou", cfg.max_iou, "Largest IoU allowed between two boxes of a canvas")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--png-compression", cfg.png_compression,
                 "zlib level of the PNGs (1 fastest .. 9 smallest)")
      ->capture_default_str()->check(CLI::Range(1, 9));
  CLI11_PARSE(app, argc, argv);

  // 2. Generate. Errors (missing Fashion-MNIST, unwritable folder) are detr::Error with a
  //    message that says what to do.
  return examples::guarded_main([&] {
    auto t0 = std::chrono::steady_clock::now();
    int64_t objects = detr::make_fashion_det(out, cfg, mnist_dir);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "FashionDet: " << cfg.train_images << " train + " << cfg.val_images
              << " val canvases, " << objects << " objects, written to " << out << " in " << s
              << " s\n";
    return 0;
  });
}
