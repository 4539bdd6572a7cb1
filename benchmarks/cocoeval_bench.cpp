// cocoeval_bench: time detr::CocoEvaluator on 1000 images x 100 detections.
//
//   cocoeval_bench <dir> [repeats]
//
// Writes <dir>/gt.json and <dir>/dt.json (a fixed-seed COCO-like set: 80 categories with
// COCO's id gaps, ~7 objects per image of all sizes, ~5% crowds, 100 detections per image,
// some near the GT, the rest random) so that reference/cocoeval_bench.py evaluates the very
// same files. Timed: reading the results file + evaluate (matching, accumulation, summary),
// the ground truth being loaded once, as for pycocotools' loadRes + evaluate + accumulate +
// summarize. Prints one json line: {"median_s": ..., "runs": [...], "stats": [12 numbers]}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "detr/core/rng.hpp"
#include "detr/eval/coco_eval.hpp"

namespace {
void write_data(const std::string& dir) {
  using json = nlohmann::json;
  detr::Rng rng(2024);
  std::vector<int64_t> cat_ids;
  for (int64_t id = 1; cat_ids.size() < 80; ++id)
    if (id % 12 != 0) cat_ids.push_back(id);  // 80 ids in 1..87 with gaps, like COCO's
  json gt, dt = json::array();
  gt["categories"] = json::array();
  for (auto id : cat_ids) gt["categories"].push_back({{"id", id}, {"name", "c" + std::to_string(id)}});
  gt["images"] = json::array();
  gt["annotations"] = json::array();
  int64_t ann_id = 1;
  auto r2 = [](double v) { return std::round(v * 100) / 100; };
  for (int64_t img = 1; img <= 1000; ++img) {
    const double W = double(rng.randint(320, 640)), H = double(rng.randint(320, 640));
    gt["images"].push_back({{"id", img}, {"file_name", std::to_string(img) + ".jpg"},
                            {"width", W}, {"height", H}});
    std::vector<std::pair<std::array<double, 4>, int64_t>> objs;
    const int64_t n_gt = rng.randint(0, 14);
    for (int64_t g = 0; g < n_gt; ++g) {
      double w = std::exp(rng.uniform(std::log(6.0), std::log(W * 0.7)));
      double h = std::exp(rng.uniform(std::log(6.0), std::log(H * 0.7)));
      std::array<double, 4> b = {r2(rng.uniform(0, W - w)), r2(rng.uniform(0, H - h)), r2(w), r2(h)};
      int64_t cat = cat_ids[size_t(rng.randint(0, 79))];
      int crowd = rng.uniform() < 0.05;
      gt["annotations"].push_back({{"id", ann_id++}, {"image_id", img}, {"category_id", cat},
                                   {"bbox", b}, {"area", r2(b[2] * b[3] * rng.uniform(0.5, 1))},
                                   {"iscrowd", crowd}});
      objs.push_back({b, cat});
    }
    for (int d = 0; d < 100; ++d) {
      std::array<double, 4> b;
      int64_t cat;
      if (!objs.empty() && d < 3 * int(objs.size())) {
        const auto& [g, c] = objs[size_t(d) % objs.size()];
        b = {r2(g[0] + rng.normal() * 0.08 * g[2]), r2(g[1] + rng.normal() * 0.08 * g[3]),
             r2(g[2] * std::exp(rng.normal() * 0.1)), r2(g[3] * std::exp(rng.normal() * 0.1))};
        cat = rng.uniform() < 0.8 ? c : cat_ids[size_t(rng.randint(0, 79))];
      } else {
        double w = rng.uniform(4, W / 2), h = rng.uniform(4, H / 2);
        b = {r2(rng.uniform(0, W - w)), r2(rng.uniform(0, H - h)), r2(w), r2(h)};
        cat = cat_ids[size_t(rng.randint(0, 79))];
      }
      dt.push_back({{"image_id", img}, {"category_id", cat}, {"bbox", b},
                    {"score", std::round(rng.uniform() * 1000) / 1000}});
    }
  }
  std::ofstream(dir + "/gt.json") << gt.dump();
  std::ofstream(dir + "/dt.json") << dt.dump();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: cocoeval_bench <dir> [repeats]\n";
    return 2;
  }
  const std::string dir = argv[1];
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  std::filesystem::create_directories(dir);
  write_data(dir);
  detr::CocoDataset gt(dir + "/gt.json", "");
  detr::CocoEvaluator ev(gt);
  std::vector<double> runs;
  detr::CocoEvalResult res;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms up
    auto t0 = std::chrono::steady_clock::now();
    auto dets = detr::load_detections(dir + "/dt.json");
    res = ev.evaluate(dets);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) runs.push_back(s);
  }
  std::vector<double> sorted = runs;
  std::sort(sorted.begin(), sorted.end());
  nlohmann::json out = {{"median_s", sorted[sorted.size() / 2]}, {"runs", runs},
                        {"stats", res.stats}};
  std::cout << out.dump() << std::endl;
  return 0;
}
