#include "detr/eval/coco_eval.hpp"

#include <sstream>

#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;
using json = nlohmann::json;

namespace {
const std::string kData = DETR_TEST_DATA_DIR;

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}
}  // namespace

// tests/reference/make_coco_eval.py: pycocotools COCOeval on crowds, empty images, ties,
// more than 100 detections, a category without detections and one without GT.
TEST_CASE("COCO eval reproduces pycocotools' 12 numbers and per-category AP", "[coco_eval]") {
  CocoDataset gt(kData + "/coco_eval_gt.json", "");
  auto dets = load_detections(kData + "/coco_eval_dt.json");
  json expected = read_json(kData + "/coco_eval_expected.json");
  CocoEvaluator ev(gt);
  CocoEvalResult r = ev.evaluate(dets);
  for (int i = 0; i < 12; ++i) {
    INFO("stat " << i);
    // Bit-identical: same matching, same float operations, numpy's pairwise mean.
    REQUIRE(r.stats[i] == expected["stats"][i].get<double>());
  }
  REQUIRE(r.category_ids.size() == expected["per_category_ap"].size());
  for (size_t k = 0; k < r.category_ids.size(); ++k) {
    INFO("category " << r.category_ids[k]);
    double want = expected["per_category_ap"][std::to_string(r.category_ids[k])].get<double>();
    REQUIRE(r.per_category_ap[k] == want);
  }

  // Summary lines in pycocotools' format.
  std::ostringstream os;
  r.print_summary(os);
  char line[160];
  std::snprintf(line, sizeof line,
                " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = %0.3f",
                expected["stats"][0].get<double>());
  REQUIRE_THAT(os.str(), Catch::Contains(line));
  std::snprintf(line, sizeof line,
                " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = %0.3f",
                expected["stats"][11].get<double>());
  REQUIRE_THAT(os.str(), Catch::Contains(line));
}

TEST_CASE("results do not depend on detection order when scores are distinct", "[coco_eval]") {
  CocoDataset gt(kData + "/coco_eval_gt.json", "");
  auto dets = load_detections(kData + "/coco_eval_dt.json");
  for (size_t i = 0; i < dets.size(); ++i) dets[i].score += 1e-7 * double(i);  // break ties
  auto a = CocoEvaluator(gt).evaluate(dets);
  std::reverse(dets.begin(), dets.end());
  auto b = CocoEvaluator(gt).evaluate(dets);
  for (int i = 0; i < 12; ++i) REQUIRE(a.stats[i] == b.stats[i]);
}

TEST_CASE("perfect detections give AP 1, crowd matches are ignored", "[coco_eval]") {
  json doc = json::parse(R"({
    "images": [{"id": 1, "file_name": "a", "width": 400, "height": 400},
               {"id": 2, "file_name": "b", "width": 400, "height": 400}],
    "categories": [{"id": 5, "name": "x"}],
    "annotations": [
      {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 50, 60], "area": 3000},
      {"id": 2, "image_id": 1, "category_id": 5, "bbox": [200, 200, 150, 100], "area": 15000},
      {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 400, 400], "area": 160000, "iscrowd": 1}
    ]})");
  auto gt = CocoDataset::from_json(doc, "mem.json");
  std::vector<Detection> dets = {{1, 5, {10, 10, 50, 60}, 0.9}, {1, 5, {200, 200, 150, 100}, 0.8},
                                 // inside the crowd region: ignored, not a false positive
                                 {2, 5, {10, 10, 20, 20}, 0.95}, {2, 5, {100, 100, 30, 30}, 0.7}};
  auto r = CocoEvaluator(gt).evaluate(dets);
  REQUIRE(r.stats[0] == Approx(1.0).epsilon(1e-12));
  REQUIRE(r.stats[8] == Approx(1.0).epsilon(1e-12));
  REQUIRE(r.stats[3] == -1.0);  // no small GT at all
  // A false positive with the top score halves precision at low recall.
  dets.push_back({1, 5, {300, 10, 40, 40}, 0.99});
  auto r2 = CocoEvaluator(gt).evaluate(dets);
  REQUIRE(r2.stats[0] < 1.0);
  REQUIRE(r2.stats[8] == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("results files: extra keys are skipped, fields read exactly", "[coco_eval]") {
  test::TempDir dir;
  test::write_text(dir / "r.json", R"([
    {"image_id": 3, "segmentation": [[1, 2, {"x": [3]}]], "category_id": 7, "score": 0.25,
     "bbox": [1.5, 2, 3e1, 4], "area": 120, "extra": null},
    {"bbox": [0, 0, 1, 1], "score": 1, "category_id": 2, "image_id": 9}])");
  auto d = load_detections(dir / "r.json");
  REQUIRE(d.size() == 2);
  REQUIRE(d[0].image_id == 3);
  REQUIRE(d[0].category_id == 7);
  REQUIRE(d[0].score == 0.25);
  REQUIRE(d[0].bbox == std::array<double, 4>{1.5, 2, 30, 4});
  REQUIRE(d[1].image_id == 9);
  test::write_text(dir / "e.json", "[]");
  REQUIRE(load_detections(dir / "e.json").empty());

  // save_detections round-trips exactly.
  d[1].score = 0.1 + 0.2;
  d[1].bbox = {1.0 / 3.0, 2e-7, 123456.789, 4.5};
  save_detections(dir / "s.json", d);
  auto back = load_detections(dir / "s.json");
  REQUIRE(back.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    REQUIRE(back[i].image_id == d[i].image_id);
    REQUIRE(back[i].category_id == d[i].category_id);
    REQUIRE(back[i].score == d[i].score);
    REQUIRE(back[i].bbox == d[i].bbox);
  }
  REQUIRE_THROWS_WITH(save_detections(dir / "no/dir/s.json", d), Catch::Contains("s.json"));
}

TEST_CASE("bad detections give clear errors", "[coco_eval][error]") {
  CocoDataset gt(kData + "/coco_eval_gt.json", "");
  std::vector<Detection> dets = {{424242, 1, {0, 0, 1, 1}, 0.5}};
  REQUIRE_THROWS_WITH(CocoEvaluator(gt).evaluate(dets), Catch::Contains("image id 424242"));
  dets = {{gt.image_info(0).id, 1, {0, 0, 1, 1}, NAN}};
  REQUIRE_THROWS_WITH(CocoEvaluator(gt).evaluate(dets), Catch::Contains("non-finite score"));

  test::TempDir dir;
  test::write_text(dir / "r.json", R"([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"),
                      Catch::Contains("r.json") && Catch::Contains("'score'"));
  test::write_text(dir / "r.json", R"([{"image_id": 1, "category_id": "cat", "score": 1, "bbox": [1, 2, 3, 4]}])");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"), Catch::Contains("detection #0"));
  test::write_text(dir / "r.json", R"([{"image_id": 1.5, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]}])");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"), Catch::Contains("must be an integer"));
  test::write_text(dir / "r.json", R"([{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3]}])");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"), Catch::Contains("4 numbers"));
  test::write_text(dir / "r.json", R"({"image_id": 1})");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"), Catch::Contains("json array"));
  test::write_text(dir / "r.json", R"([{"image_id": 1,)");
  REQUIRE_THROWS_WITH(load_detections(dir / "r.json"), Catch::Contains("malformed json"));
}
