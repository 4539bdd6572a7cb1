#include "detr/data/coco.hpp"

#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;
using json = nlohmann::json;
using test::write_text;

namespace {
// Three images (one without annotations), COCO-style category ids with gaps.
json small_coco() {
  return json::parse(R"({
    "images": [
      {"id": 42, "file_name": "a.png", "width": 40, "height": 30},
      {"id": 7,  "file_name": "b.png", "width": 20, "height": 20},
      {"id": 9,  "file_name": "c.png", "width": 16, "height": 12}
    ],
    "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                   {"id": 18, "name": "dog"}],
    "annotations": [
      {"id": 1, "image_id": 42, "category_id": 18, "bbox": [2, 3, 10, 5], "area": 50, "iscrowd": 0},
      {"id": 2, "image_id": 42, "category_id": 1, "bbox": [30, 20, 20, 20], "area": 400, "iscrowd": 0},
      {"id": 3, "image_id": 42, "category_id": 90, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 1},
      {"id": 4, "image_id": 42, "category_id": 90, "bbox": [5, 5, 0, 4], "area": 0, "iscrowd": 0},
      {"id": 5, "image_id": 42, "category_id": 1, "bbox": [-4, -2, 8, 6], "area": 48},
      {"id": 6, "image_id": 7, "category_id": 90, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}
    ]})");
}

void write_images(const test::TempDir& dir) {
  write_png(dir / "a.png", Image::filled(30, 40, {1, 2, 3}));
  write_png(dir / "b.png", Image::filled(20, 20, {4, 5, 6}));
  write_png(dir / "c.png", Image::filled(12, 16, {7, 8, 9}));
}
}  // namespace

TEST_CASE("category ids with gaps map to contiguous labels and back", "[coco]") {
  auto ds = CocoDataset::from_json(small_coco(), "mem.json");
  REQUIRE(ds.num_classes() == 3);
  REQUIRE(ds.label_of(1) == 0);
  REQUIRE(ds.label_of(18) == 1);
  REQUIRE(ds.label_of(90) == 2);
  for (int64_t k = 0; k < 3; ++k) REQUIRE(ds.label_of(ds.category_id_of(k)) == k);
  REQUIRE(ds.class_name(1) == "dog");
  REQUIRE_THROWS_WITH(ds.label_of(2), Catch::Contains("unknown category id 2"));
  REQUIRE_THROWS(ds.category_id_of(3));
}

TEST_CASE("targets: crowds dropped, boxes xyxy clamped, degenerate boxes dropped", "[coco]") {
  auto ds = CocoDataset::from_json(small_coco(), "mem.json");
  REQUIRE(ds.size() == 3);
  REQUIRE(ds.annotations(0).size() == 5);  // raw annotations keep the crowd
  Target t = ds.target(0);
  REQUIRE(t.image_id == 42);
  REQUIRE(t.num_objects() == 3);  // crowd (id 3) and zero-width (id 4) dropped
  REQUIRE(t.boxes.shape() == Shape{3, 4});
  std::vector<float> expect = {2, 3, 12, 8,  30, 20, 40, 30,  0, 0, 4, 4};
  REQUIRE(t.boxes.to_vector() == expect);
  REQUIRE(t.labels.to_vector() == std::vector<int64_t>{1, 0, 0});
  REQUIRE(t.area.to_vector() == std::vector<float>{50, 400, 48});
  REQUIRE(t.orig_size == std::array<int64_t, 2>{30, 40});

  Target empty = ds.target(2);  // image without annotations is a valid sample
  REQUIRE(empty.num_objects() == 0);
  REQUIRE(empty.boxes.shape() == Shape{0, 4});
  REQUIRE(ds.index_of_image_id(9) == 2);
}

TEST_CASE("get() decodes the image from the image folder", "[coco]") {
  test::TempDir dir;
  write_images(dir);
  write_text(dir / "ann.json", small_coco().dump());
  CocoDataset ds(dir / "ann.json", dir.str());
  Sample s = ds.get(1);
  REQUIRE(s.image.pixels.shape() == Shape{20, 20, 3});
  REQUIRE(s.image.at(3, 3)[1] == 5);
  REQUIRE(s.target.num_objects() == 1);
  REQUIRE(ds.get(2).target.num_objects() == 0);
}

TEST_CASE("malformed inputs give errors naming file, id and the problem", "[coco][error]") {
  test::TempDir dir;
  write_text(dir / "broken.json", "{\"images\": [ {\"id\": 1, ");
  REQUIRE_THROWS_WITH(CocoDataset(dir / "broken.json", dir.str()),
                      Catch::Contains("malformed json") && Catch::Contains("broken.json"));
  REQUIRE_THROWS_WITH(CocoDataset(dir / "nope.json", dir.str()), Catch::Contains("nope.json"));

  auto doc = small_coco();
  doc["annotations"][1].erase("bbox");
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("x.json") && Catch::Contains("annotation id 2") &&
                          Catch::Contains("image id 42") && Catch::Contains("'bbox'"));

  doc = small_coco();
  doc["annotations"][0]["category_id"] = 13;
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("category_id 13") && Catch::Contains("annotation id 1"));

  doc = small_coco();
  doc["annotations"][5]["image_id"] = 1000;
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"), Catch::Contains("image id 1000"));

  doc = small_coco();
  doc["annotations"][0]["bbox"] = {1, 2, 3};
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"), Catch::Contains("4 numbers"));

  doc = small_coco();
  doc["images"][1].erase("width");
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("image id 7") && Catch::Contains("'width'"));

  doc = small_coco();
  doc["images"][1]["id"] = "seven";
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"), Catch::Contains("must be an integer"));

  doc = small_coco();
  doc.erase("categories");
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"), Catch::Contains("'categories'"));
}

TEST_CASE("undecodable or mis-sized images name the image id", "[coco][error]") {
  test::TempDir dir;
  write_images(dir);
  write_text(dir / "b.png", "\x89PNG garbage");
  write_png(dir / "c.png", Image::filled(13, 16));  // json says 16 x 12
  write_text(dir / "ann.json", small_coco().dump());
  CocoDataset ds(dir / "ann.json", dir.str());
  REQUIRE(ds.get(0).target.num_objects() == 3);
  REQUIRE_THROWS_WITH(ds.get(1), Catch::Contains("image id 7") && Catch::Contains("b.png") &&
                                     Catch::Contains("cannot decode"));
  REQUIRE_THROWS_WITH(ds.get(2), Catch::Contains("image id 9") && Catch::Contains("16 x 13"));
  std::filesystem::remove(dir / "a.png");
  REQUIRE_THROWS_WITH(ds.get(0), Catch::Contains("image id 42") && Catch::Contains("a.png"));
}
