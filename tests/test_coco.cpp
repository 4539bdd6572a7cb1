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

TEST_CASE("the image header is checked against the json before decoding", "[coco][error]") {
  test::TempDir dir;
  write_images(dir);
  // c.png claims 20000 x 20000 (and holds 7 pixels): the json says 16 x 12, so get() must stop
  // at the header, before the decoder or the pixel limit get a say.
  test::write_bytes(dir / "c.png", test::png_claiming(20000, 20000));
  write_text(dir / "ann.json", small_coco().dump());
  CocoDataset ds(dir / "ann.json", dir.str());
  REQUIRE_THROWS_WITH(ds.get(2), Catch::Contains("ann.json") && Catch::Contains("image id 9") &&
                                     Catch::Contains("c.png") &&
                                     Catch::Contains("is 20000 x 20000 pixels, the json says "
                                                     "16 x 12"));

  // When the json agrees with a bomb's header, the pixel limit refuses it, still undecoded.
  auto doc = small_coco();
  doc["images"][2]["width"] = 20000;
  doc["images"][2]["height"] = 20000;
  test::write_bytes(dir / "c.png", test::jpeg_claiming(20000, 20000));
  auto bomb = CocoDataset::from_json(doc, "bomb.json", dir.str());
  REQUIRE_THROWS_WITH(bomb.get(2), Catch::Contains("bomb.json") && Catch::Contains("image id 9") &&
                                       Catch::Contains("20000 x 20000") &&
                                       Catch::Contains("limit of 178956970"));

  // get() follows the process-wide limit.
  const int64_t saved = max_image_pixels();
  set_max_image_pixels(100);
  REQUIRE_THROWS_WITH(ds.get(1), Catch::Contains("image id 7") && Catch::Contains("b.png") &&
                                     Catch::Contains("limit of 100"));
  set_max_image_pixels(saved);
  REQUIRE(ds.get(1).image.width() == 20);
}

TEST_CASE("bbox sizes: negative is an error, zero is kept for evaluation only", "[coco][error]") {
  auto doc = small_coco();
  doc["annotations"][1]["bbox"] = {30, 20, -20, 20};
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("x.json") && Catch::Contains("annotation id 2") &&
                          Catch::Contains("image id 42") && Catch::Contains("[30,20,-20,20]") &&
                          Catch::Contains("negative width or height"));
  doc = small_coco();
  doc["annotations"][5]["bbox"] = {1, 1, 2, -0.5};
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("annotation id 6") && Catch::Contains("image id 7") &&
                          Catch::Contains("negative width or height"));
  doc = small_coco();
  doc["annotations"][0]["area"] = -3;
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("annotation id 1") && Catch::Contains("'area' -3") &&
                          Catch::Contains("negative"));

  // Zero width (id 4) and zero height: accepted, in annotations() (as pycocotools evaluates
  // them), not in the training target.
  doc = small_coco();
  doc["annotations"][5]["bbox"] = {1, 1, 2, 0};
  doc["annotations"][5].erase("area");
  auto ds = CocoDataset::from_json(doc, "x.json");
  REQUIRE(ds.annotations(0)[3].id == 4);
  REQUIRE(ds.annotations(0)[3].bbox[2] == 0);
  REQUIRE(ds.target(0).num_objects() == 3);
  REQUIRE(ds.annotations(1).size() == 1);
  REQUIRE(ds.annotations(1)[0].area == 0);
  REQUIRE(ds.target(1).num_objects() == 0);
}

TEST_CASE("annotation ids: duplicates are an error, missing ones never collide", "[coco][error]") {
  auto doc = small_coco();
  doc["annotations"][4]["id"] = 2;
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("x.json") &&
                          Catch::Contains("annotation #1 and annotation #4 both have id 2"));

  // No ids at all: 1, 2, ... in file order, as before.
  doc = small_coco();
  for (auto& a : doc["annotations"]) a.erase("id");
  auto ds = CocoDataset::from_json(doc, "x.json");
  std::vector<int64_t> ids;
  for (const auto& a : ds.annotations(0)) ids.push_back(a.id);
  REQUIRE(ids == std::vector<int64_t>{1, 2, 3, 4, 5});
  REQUIRE(ds.annotations(1)[0].id == 6);

  // Some ids missing: position + 1 would be 1 for #0 and 4 for #3, both real ids elsewhere;
  // made-up ids come after the largest real one instead, and the file is accepted.
  doc = small_coco();
  doc["annotations"][0].erase("id");
  doc["annotations"][3].erase("id");
  doc["annotations"][2]["id"] = 1;
  doc["annotations"][4]["id"] = 4;
  ds = CocoDataset::from_json(doc, "x.json");
  ids.clear();
  for (const auto& a : ds.annotations(0)) ids.push_back(a.id);
  REQUIRE(ids == std::vector<int64_t>{7, 2, 1, 8, 4});

  // Errors in an annotation without id name its position.
  doc = small_coco();
  doc["annotations"][0].erase("id");
  doc["annotations"][0]["bbox"] = {1, 1, -1, 1};
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("annotation #0 (no id, image id 42)"));
}

TEST_CASE("file_name must stay inside the image folder", "[coco][error]") {
  for (const char* bad : {"/etc/passwd", "../b.png", "sub/../../b.png", "./../b.png"}) {
    auto doc = small_coco();
    doc["images"][1]["file_name"] = bad;
    REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json", "/data/images"),
                        Catch::Contains("x.json") && Catch::Contains("image id 7") &&
                            Catch::Contains(std::string("'") + bad + "'") &&
                            Catch::Contains("outside the image folder"));
  }
  auto doc = small_coco();
  doc["images"][1]["file_name"] = "";
  REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                      Catch::Contains("image id 7") && Catch::Contains("empty 'file_name'"));
  // Sub-folders, and '..' that stays inside, are fine.
  doc["images"][1]["file_name"] = "sub/../b.png";
  doc["images"][2]["file_name"] = "train/c..png";
  auto ds = CocoDataset::from_json(doc, "x.json", "/data/images");
  REQUIRE(ds.image_path(1) == "/data/images/sub/../b.png");
  REQUIRE(ds.image_path(2) == "/data/images/train/c..png");
}

TEST_CASE("iscrowd: 0 / 1, integral floats and json booleans", "[coco][error]") {
  auto doc = small_coco();
  doc["annotations"][0]["iscrowd"] = true;   // crowd: dropped from the target
  doc["annotations"][1]["iscrowd"] = false;
  doc["annotations"][2]["iscrowd"] = 0.0;    // was the crowd: now an object
  doc["annotations"][5]["iscrowd"] = 1.0;
  auto ds = CocoDataset::from_json(doc, "x.json");
  REQUIRE(ds.annotations(0)[0].iscrowd);
  REQUIRE_FALSE(ds.annotations(0)[1].iscrowd);
  REQUIRE_FALSE(ds.annotations(0)[2].iscrowd);
  REQUIRE(ds.annotations(1)[0].iscrowd);
  REQUIRE(ds.target(0).labels.to_vector() == std::vector<int64_t>{0, 2, 0});
  REQUIRE(ds.target(1).num_objects() == 0);

  for (json bad : {json(2), json(0.5), json("1"), json(nullptr), json(-1)}) {
    doc = small_coco();
    doc["annotations"][0]["iscrowd"] = bad;
    REQUIRE_THROWS_WITH(CocoDataset::from_json(doc, "x.json"),
                        Catch::Contains("x.json") && Catch::Contains("annotation id 1") &&
                            Catch::Contains("'iscrowd' must be 0, 1, true or false, got " +
                                            bad.dump()));
  }
}
