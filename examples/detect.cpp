// detect: run a trained checkpoint on image files; draw the detections on each image (PNG) and
// list them in one JSON file.
//
//   ./build/examples/detect --checkpoint runs/detr/epoch_0050.safetensors data/fashion_det/val/000001.png
//   ./build/examples/detect --checkpoint ckpt.safetensors --score 0.3 --out dets img1.png img2.jpg
//
// writes dets/000001.png, ... (boxes with "class score" tags) and dets/detections.json:
//   [{"image": "img1.png", "width": 160, "height": 144,
//     "detections": [{"label": "Bag", "category_id": 9, "score": 0.91, "bbox": [x, y, w, h]}, ...]}, ...]
// with boxes in pixels of the original image, COCO's [x, y, width, height], best score first.
//   1. read the checkpoint's identity and rebuild the model it holds
//   2. per image: decode, resize + normalise as in evaluation, forward, post-process
//   3. draw and collect the detections at or above --score
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <set>

#include "detr/data/batch.hpp"
#include "detr/eval/draw.hpp"
#include "detr/train/trainer.hpp"
#include "main_guard.hpp"
#include "models.hpp"

using namespace detr;
namespace fs = std::filesystem;

struct Args {
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  std::string checkpoint, model, out = "detections", json;
  std::vector<std::string> images;
  double score = 0.5;
  int64_t image_size = 0;
  int threads = 0, text_scale = 1;
};

template <Detector M>
int run(const Args& a, const examples::CheckpointInfo& info) {
  using T = typename M::Scalar;
  // 1. The model the checkpoint holds, in inference mode.
  M model;
  io::load_checkpoint(info.path, model);
  check_finite(model, info.path);
  eval(model);
  NoGrad no_grad;
  const int64_t size = a.image_size > 0 ? a.image_size : info.image_size;
  const Transform resize = examples::eval_resize(size);
  fs::create_directories(a.out);
  nlohmann::json all = nlohmann::json::array();
  std::set<std::string> outputs;
  Rng unused(0);  // the eval resize draws nothing

  for (const std::string& path : a.images) {
    // 2. The image as evaluation feeds it: shorter side `size`, ImageNet normalisation.
    Sample s{read_image(path), Target{}};
    const int64_t H = s.image.height(), W = s.image.width();
    s.target.boxes = Tensor<float>::empty({0, 4});
    s.target.labels = Tensor<int64_t>::empty({0});
    s.target.area = Tensor<float>::empty({0});
    s.target.iscrowd = Tensor<uint8_t>::empty({0});
    s.target.orig_size = s.target.size = {H, W};
    const Batch batch = collate({normalize(resize(s, unused))});
    DetectorOutput<T> out = model.forward(batch_images<T>(batch), batch.mask);
    const ImageDetections<T> d = postprocess<M>(out.final(), {{H, W}})[0];

    // 3. Detections at or above the threshold, best first.
    std::vector<int64_t> order(size_t(d.scores.numel()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return d.scores.data()[x] > d.scores.data()[y]; });
    std::vector<DrawnDetection> drawn;
    nlohmann::json dets = nlohmann::json::array();
    for (int64_t i : order) {
      const double score = double(d.scores.data()[i]);
      if (score < a.score) break;
      const int64_t label = d.labels.data()[i];
      const T* b = d.boxes.data() + 4 * i;  // x0, y0, x1, y1 in pixels
      drawn.push_back({{float(b[0]), float(b[1]), float(b[2]), float(b[3])}, label, float(score)});
      // Rounded for reading: scores to 1e-4, pixels to 0.01.
      auto r = [](double v, double per_unit) { return std::round(v * per_unit) / per_unit; };
      dets.push_back({{"label", info.class_names[size_t(label)]},
                      {"category_id", info.category_ids[size_t(label)]},
                      {"score", r(score, 1e4)},
                      {"bbox", {r(b[0], 100), r(b[1], 100), r(b[2] - b[0], 100), r(b[3] - b[1], 100)}}});
    }
    const std::string png = (fs::path(a.out) / fs::path(path).filename().replace_extension(".png")).string();
    DETR_CHECK(outputs.insert(png).second,
               path << " would overwrite " << png << ", the output of an earlier input with the same file stem");
    write_png(png, draw_detections(s.image, drawn, info.class_names, 0, a.text_scale));
    std::printf("%s: %zu detections >= %.2f -> %s\n", path.c_str(), drawn.size(), a.score, png.c_str());
    all.push_back({{"image", path}, {"width", W}, {"height", H}, {"output", png}, {"detections", dets}});
  }

  const std::string json = a.json.empty() ? (fs::path(a.out) / "detections.json").string() : a.json;
  std::ofstream f(json);
  DETR_CHECK(f.good(), "cannot open " << json << " for writing");
  // One image per block, one detection per line.
  f << "[";
  for (size_t i = 0; i < all.size(); ++i) {
    nlohmann::json head = all[i];
    head.erase("detections");
    const std::string h = head.dump();
    f << (i ? ",\n " : "\n ") << h.substr(0, h.size() - 1) << ", \"detections\": [";
    const auto& dets = all[i]["detections"];
    for (size_t k = 0; k < dets.size(); ++k) f << (k ? ",\n  " : "\n  ") << dets[k].dump();
    f << (dets.empty() ? "]}" : "\n ]}");
  }
  f << "\n]\n";
  DETR_CHECK(f.good(), "cannot write " << json);
  std::printf("detections of %zu images written to %s\n", a.images.size(), json.c_str());
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Detect objects in images with a checkpoint written by train; writes annotated PNGs and a JSON list."};
  app.add_option("images", a.images, "Image files (PNG, JPEG, ...)")->required()->check(CLI::ExistingFile);
  app.add_option("--checkpoint", a.checkpoint, "Checkpoint written by train (epoch_NNNN.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--model", a.model, "Expected model type (default: whatever the checkpoint holds)")
      ->check(CLI::IsMember(examples::kModelNames));
  app.add_option("--score", a.score, "Keep detections with at least this score")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--out", a.out, "Folder for the annotated images (one PNG per input, same stem)")
      ->capture_default_str();
  app.add_option("--json", a.json, "Where to write the detections (default: OUT/detections.json)");
  app.add_option("--image-size", a.image_size, "Shorter image side (default: the one the checkpoint was trained at)")
      ->check(CLI::Range(32, 4096));
  app.add_option("--text-scale", a.text_scale, "Integer scale of the label text")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  app.add_option("--threads", a.threads, "Threads for the model (0: all cores)")->check(CLI::NonNegativeNumber);
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
