#include "detr/data/fashion_det.hpp"

#include "data_helpers.hpp"
#include "detr/data/coco.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
FashionDetConfig small_config(uint64_t seed) {
  FashionDetConfig cfg;
  cfg.train_images = 12;
  cfg.val_images = 5;
  cfg.seed = seed;
  return cfg;
}

double iou_xywh(const std::array<double, 4>& a, const std::array<double, 4>& b) {
  double iw = std::min(a[0] + a[2], b[0] + b[2]) - std::max(a[0], b[0]);
  double ih = std::min(a[1] + a[3], b[1] + b[3]) - std::max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih);
}
}  // namespace

TEST_CASE("Fashion-MNIST IDX files load with their 10 labels", "[fashion_det]") {
  auto m = load_fashion_mnist("test");
  REQUIRE(m.images.shape() == Shape{10000, 28, 28});
  REQUIRE(m.labels.shape() == Shape{10000});
  std::array<int, 10> count{};
  for (int64_t i = 0; i < m.size(); ++i) count.at(m.labels.data()[i])++;
  for (int c : count) REQUIRE(c == 1000);  // the test split is balanced
}

TEST_CASE("FashionDet writes a valid COCO dataset with the promised properties", "[fashion_det]") {
  test::TempDir dir;
  int64_t n_objects = make_fashion_det(dir.str(), small_config(3));
  int64_t seen = 0;
  for (std::string split : {"train", "val"}) {
    CocoDataset ds(dir / ("annotations/instances_" + split + ".json"), dir / split);
    REQUIRE(ds.size() == (split == "train" ? 12 : 5));
    REQUIRE(ds.num_classes() == 10);
    REQUIRE(ds.class_name(9) == "Ankle boot");
    for (int64_t i = 0; i < ds.size(); ++i) {
      Sample s = ds.get(i);  // decodes: PNG and json sizes agree
      const auto& info = ds.image_info(i);
      REQUIRE(info.width >= 128);
      REQUIRE(info.width <= 192);
      REQUIRE(info.height >= 128);
      REQUIRE(info.height <= 192);
      const auto& anns = ds.annotations(i);
      REQUIRE(anns.size() >= 1);
      REQUIRE(anns.size() <= 8);
      REQUIRE(s.target.num_objects() == int64_t(anns.size()));  // nothing degenerate
      seen += int64_t(anns.size());
      for (size_t a = 0; a < anns.size(); ++a) {
        const auto& b = anns[a].bbox;
        REQUIRE(b[0] >= 0);
        REQUIRE(b[1] >= 0);
        REQUIRE(b[0] + b[2] <= double(info.width));
        REQUIRE(b[1] + b[3] <= double(info.height));
        REQUIRE(std::max(b[2], b[3]) <= 84);
        for (size_t o = 0; o < a; ++o) REQUIRE(iou_xywh(b, anns[o].bbox) <= 0.3 + 1e-12);
      }
    }
  }
  REQUIRE(seen == n_objects);
}

TEST_CASE("FashionDet is reproducible from its seed, whatever the thread count", "[fashion_det]") {
  test::TempDir a, b, c;
  auto cfg = small_config(11);
  make_fashion_det(a.str(), cfg);
  cfg.threads = 3;
  make_fashion_det(b.str(), cfg);
  cfg.seed = 12;
  make_fashion_det(c.str(), cfg);
  auto bytes = [](const std::string& p) { return read_file_bytes(p); };
  REQUIRE(bytes(a / "annotations/instances_train.json") == bytes(b / "annotations/instances_train.json"));
  REQUIRE(bytes(a / "val/000003.png") == bytes(b / "val/000003.png"));
  REQUIRE(bytes(a / "train/000007.png") != bytes(c / "train/000007.png"));
}

TEST_CASE("FashionDet boxes are the tight boxes of the pasted pixels", "[fashion_det]") {
  // Flat background and one item per canvas: the item's pixels are exactly those that differ
  // from the background colour.
  auto m = load_fashion_mnist("test");
  FashionDetConfig cfg;
  cfg.background_contrast = 0;
  cfg.max_items = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    auto c = render_fashion_det_canvas(m, rng, cfg);
    REQUIRE(c.objects.size() == 1);
    const uint8_t* bg = c.image.at(0, 0);
    const auto& box = c.objects[0].box;
    if (box[0] == 0 && box[1] == 0) continue;  // (0, 0) may be covered by the item
    int64_t x0 = 1 << 20, y0 = 1 << 20, x1 = -1, y1 = -1;
    for (int64_t y = 0; y < c.image.height(); ++y)
      for (int64_t x = 0; x < c.image.width(); ++x)
        if (!std::equal(bg, bg + 3, c.image.at(y, x))) {
          x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
        }
    INFO("seed " << seed);
    REQUIRE(box == std::array<int64_t, 4>{x0, y0, x1 - x0 + 1, y1 - y0 + 1});
  }
}

TEST_CASE("missing Fashion-MNIST names the Debian package to install", "[fashion_det][error]") {
  test::TempDir dir;
  REQUIRE_THROWS_WITH(load_fashion_mnist("train", dir / "nowhere"),
                      Catch::Contains("dataset-fashion-mnist") && Catch::Contains("nowhere"));
  test::write_text(dir / "t10k-images-idx3-ubyte.gz", "not gzip, not idx");
  REQUIRE_THROWS_WITH(load_fashion_mnist("test", dir.str()), Catch::Contains("not an IDX file"));
  REQUIRE_THROWS_WITH(load_fashion_mnist("validation"), Catch::Contains("'train' or 'test'"));
}
